"""Frames per atom against the roughness of the frame weights, for frame settings (printed).

    python benchmarks/frame_probe.py [--systems methane water192 cu300 ...] [--settings NAME ...]
                                     [--span 0.1] [--points 201] [--paths 2] [--out rows.json]

No backbone: along random straight paths through each structure, every atom's local
ensemble average ``G_i(s) = sum_k w_ik tr(A F_ik) / sum_k w_ik`` of a fixed
direction-dependent function of its frames (``A`` a seeded random 3x3 matrix) is
recorded, and its second derivative ``d2 G_i / ds2`` taken by finite differences.  A
backbone whose predictions differ by ``dE`` from frame to frame adds about ``dE`` times
this curvature to the wrapped model's, so it is the part of ECSE's roughness that the
frame settings decide (the backbone's own spread is the other factor).  Paths move every
atom: a seeded Gaussian direction scaled to 1 A per atom (RMS), ``--span`` A long, at
``--points`` points; the tables give the largest ``|d2G/ds2|`` over atoms and paths and the
median over atoms of each atom's largest, with frame copies of weight > 0 per atom (mean,
max) at the start of the paths.

Settings (``--settings``; each a set of ``FrameParams`` overrides, the others at their
defaults): the published pruning (threshold 0.9, 4 rounds), a lower threshold, no pruning
(``none``), and wider switches (``rw`` radial width in A, ``aw`` angular width, ``at``
angular threshold);
``--custom`` adds any other.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from ecse.frameset import PUBLISHED

sys.path.insert(0, str(Path(__file__).resolve().parent))
import solids  # noqa: E402  (the named structures)
from smoothness import parse_setting  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CUTOFF = 5.0

SETTINGS = {  # explicit, so that a change of the defaults does not change a row
    "published pruning": dict(PUBLISHED),
    "prune 0.5": {**PUBLISHED, "pruning_threshold": 0.5},
    "prune 0.5, rw 0.3": {**PUBLISHED, "pruning_threshold": 0.5, "radial_width": 0.3},
    "none": {**PUBLISHED, "num_prunings": 0},
    "none, rw 0.3": {**PUBLISHED, "num_prunings": 0, "radial_width": 0.3},
    "none, rw 0.3, aw 0.2": {"num_prunings": 0, "radial_width": 0.3, "angle_threshold": 0.2, "angle_width": 0.2},
    "none, rw 0.5, aw 0.2": {"num_prunings": 0, "radial_width": 0.5, "angle_threshold": 0.2, "angle_width": 0.2},
    "none, rw 0.5, at 0.12, aw 0.12": {"num_prunings": 0, "radial_width": 0.5, "angle_threshold": 0.12,
                                       "angle_width": 0.12},  # ecse's defaults
}
SYSTEMS = [name for name in solids.SYSTEMS if name != "water1536"]


def structure(name: str, data_dir: Path):
    """``ase.Atoms`` of a system of ``benchmarks/solids.py`` (the same structures); several
    molecules (methane) are placed 12 A apart in one box, where no frame sees another."""
    atoms_list, _ = solids.structures(name, data_dir)
    atoms = atoms_list[0].copy()
    for i, other in enumerate(atoms_list[1:], 1):
        other = other.copy()
        other.positions += [12.0 * i, 0, 0]
        atoms += other
    return atoms


def probe(atoms, params, span: float, points: int, paths: int, seed: int = 0) -> dict:
    """Frames per atom and curvature of the frame-averaged probe function along ``paths`` paths."""
    from ecse import local_frames

    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    periodic = bool(atoms.pbc.any())
    cell = torch.tensor(atoms.cell.array, dtype=torch.float64)[None] if periodic else None
    pbc = torch.tensor(atoms.pbc)[None] if periodic else None
    batch = torch.zeros(len(atoms), dtype=torch.long)
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    lf = local_frames(pos, CUTOFF, batch, cell, pbc, params)
    kept = ((~lf.invariant) & (lf.weight > 0)).to(torch.long)
    per_atom = torch.zeros(len(atoms), dtype=torch.long).index_add_(0, lf.atom, kept)
    s = torch.linspace(0, span, points, dtype=torch.float64)
    h = float(s[1] - s[0])
    worst = torch.zeros(len(atoms), dtype=torch.float64)
    for p in range(paths):
        direction = torch.randn(pos.shape, generator=torch.Generator().manual_seed(seed + p), dtype=torch.float64)
        direction = direction / direction.square().sum(1).mean().sqrt()
        g = torch.stack([lf_i.combine((lf_i.rotation * a).sum((1, 2)))
                         for lf_i in (local_frames(pos + si * direction, CUTOFF, batch, cell, pbc, params) for si in s)])
        curv = ((g[2:] - 2 * g[1:-1] + g[:-2]) / h**2).abs().amax(0)
        worst = torch.maximum(worst, curv)
    return {"frames_mean": float(per_atom.double().mean()), "frames_max": int(per_atom.max()),
            "curvature_max": float(worst.max()), "curvature_median": float(worst.median())}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--custom", nargs="*", default=[],
                        help='extra settings as FrameParams overrides, e.g. "num_prunings=0,radial_width=0.3"')
    parser.add_argument("--span", type=float, default=0.1, help="path length (A per atom, RMS)")
    parser.add_argument("--points", type=int, default=201)
    parser.add_argument("--paths", type=int, default=2)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from ecse import FrameParams

    print(f"torch {torch.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load average "
          f"{os.getloadavg()[0]:.2f}; span {args.span} A per atom, {args.points} points, {args.paths} paths")
    print("\n| system | atoms | setting | frames/atom (mean, max) | max abs d2G/ds2 | median over atoms |")
    print("|---|---|---|---|---|---|")
    settings = {name: SETTINGS[name] for name in args.settings}
    for spec in args.custom:
        settings[spec] = parse_setting(spec)
    rows = []
    for name in args.systems:
        atoms = structure(name, args.data)
        for setting, values in settings.items():
            start = time.perf_counter()
            r = probe(atoms, FrameParams(**values), args.span, args.points, args.paths)
            r.update(system=name, atoms=len(atoms), setting=setting, seconds=time.perf_counter() - start)
            rows.append(r)
            print(f"| {name} | {len(atoms)} | {setting} | {r['frames_mean']:.2f}, {r['frames_max']} | "
                  f"{r['curvature_max']:.3g} | {r['curvature_median']:.3g} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
