"""The compact text table of an evaluation report (:func:`format_report`)."""
from __future__ import annotations

import os
from typing import Optional

from .targets import target_type

__all__ = ["format_report", "format_number"]


def _scale_unit(kind: str) -> tuple[float, str]:
    """Energy-like targets are printed in meV (reports hold eV), tensors as they are."""
    unit = target_type(kind).unit
    return (1000.0, f" [m{unit}]") if unit else (1.0, "")


def format_number(value: Optional[float]) -> str:
    """Short text of a number: 3 significant digits (integers from 100), scientific outside [0.01, 1e5).

    >>> format_number(123.456), format_number(1.2e-14), format_number(None), format_number(0.0)
    ('123', '1.2e-14', '-', '0')
    """
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if 100 <= abs(value) < 1e5:
        return f"{value:.0f}"
    if 0.01 <= abs(value) < 100:
        return f"{value:.3g}"
    return f"{value:.1e}"


def _rows_for(key: str, kind: str, models: dict) -> list[tuple[str, list[str]]]:
    rows, target = [], target_type(kind)
    scale, unit = _scale_unit(kind)

    def num(v):
        return format_number(None if v is None else v * scale)

    def metric(stat: str, label: str):
        rows.append((f"{key} {label}{unit}", [num(m["metrics"][key].get(stat)) for m in models.values()]))

    if target.energy_like:
        metric("mae", "MAE")
        metric("rmse", "RMSE")
        if target.errors_per_atom:
            metric("mae_per_atom", "MAE/atom")
            metric("rmse_per_atom", "RMSE/atom")
    else:
        metric("mae", "MAE")
        metric("rmse", "RMSE")
        first = next(iter(models.values()))["metrics"][key]
        for part in first["parts"]:
            rows.append((f"{key} {part} RMSE (% of std)",
                         [f"{format_number(m['metrics'][key]['parts'][part]['rmse'])} "
                          f"({m['metrics'][key]['parts'][part]['rmse_pct']:.1f}%)" for m in models.values()]))
        if "cartesian" in first:  # trained in (l=0, l=2) parts: the Cartesian form too
            rows.append((f"{key} Cartesian RMSE (% of std)",
                         [f"{format_number(m['metrics'][key]['cartesian']['rmse'])} "
                          f"({m['metrics'][key]['cartesian']['rmse_pct']:.1f}%)" for m in models.values()]))
    return rows


def format_report(report: dict) -> str:
    """Text table: one column per model, one row per metric (energies in meV)."""
    models = report["models"]
    targets = report["targets"]
    rows: list[tuple[str, list[str]]] = []
    for key, kind in targets.items():
        rows += _rows_for(key, kind, models)
    for key, kind in targets.items():
        scale, unit = _scale_unit(kind)
        rows.append((f"{key} std over rotations{unit}",
                     [format_number(None if m["rotational_std"][key] is None else m["rotational_std"][key] * scale)
                      for m in models.values()]))
    for key in targets:
        rows.append((f"{key} equivariance error (max rel.)",
                     [format_number((m["equivariance_error"][key] or {}).get("max_relative"))
                      for m in models.values()]))
    rows.append(("ECSE frames per structure", [format_number(m.get("frames_per_structure")) for m in models.values()]))
    rows.append(("time, unrotated pass [s]", [format_number(m["time_s"]) for m in models.values()]))
    names = [m["name"] for m in models.values()]
    width = max(len(r[0]) for r in rows) + 2
    cols = [max(12, len(n) + 2, *(len(r[1][c]) + 2 for r in rows)) for c, n in enumerate(names)]
    source = os.path.basename(str(report.get("data", ""))) or "data"
    head = (f"{report['num_structures']} structures ({report['num_atoms']} atoms) of {source}"
            f"{', ' + report['dtype'] if 'dtype' in report else ''}, {report['rotations']} random rotations each")
    lines = [head, " " * width + "".join(n.rjust(c) for n, c in zip(names, cols))]
    lines += [label.ljust(width) + "".join(v.rjust(c) for v, c in zip(values, cols)) for label, values in rows]
    if "report_path" in report:
        lines.append(f"report: {report['report_path']}" + (f", parity plot: {report['parity_path']}"
                                                          if report.get("parity_path") else ""))
    return "\n".join(lines)
