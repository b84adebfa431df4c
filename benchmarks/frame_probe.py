"""Frames per atom against the roughness of the frame weights, for frame settings (printed).

    python benchmarks/frame_probe.py [--systems methane water192 cu300 ...] [--settings NAME ...]
                                     [--span 0.1] [--points 201] [--paths 2] [--out rows.json]
    python benchmarks/frame_probe.py --trajectory run.extxyz [--stride 1] [--settings NAME ...]

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

With ``--trajectory FILE`` (any file ASE reads, e.g. an NVE run that ``benchmarks/smoothness.py
--trajectories DIR`` wrote), the paths are the trajectory's steps instead: ``G_i`` at every
``--stride``-th frame and its second difference per step, ``|G_i(t+1) - 2 G_i(t) + G_i(t-1)|``,
which is what a velocity-Verlet step sees of the weights; the table gives its median,
99.9th percentile and largest value over atoms and steps (and where), with the frames per
atom averaged over the trajectory; and the same second difference of every atom's adaptive
inner cutoff ``r_in`` (``LocalFrames.inner_cutoff``, in A), whose fast moves switch the
radial weights of every neighbour near it (a water molecule bent nearly straight hands
``r_in`` over from its own pair to the hydrogen-bonded neighbours).  A dynamics samples
the motions that random straight paths rarely make (molecules turning, hydrogen bonds
breaking), over far longer paths.

Settings (``--settings``; each a set of ``FrameParams`` overrides, the others at their
defaults): the published pruning (threshold 0.9, 4 rounds), a lower threshold, no pruning
(``none``), and wider switches (``rw`` radial width in A, ``aw`` angular width, ``at``
angular threshold, ``cs`` the sin² where a pair starts to count for the inner cutoff);
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
    "none, rw 0.3, aw 0.2": {"num_prunings": 0, "radial_width": 0.3, "angle_threshold": 0.2, "angle_width": 0.2,
                             "cutoff_angle_start": 0.2},
    "none, rw 0.5, aw 0.2": {"num_prunings": 0, "radial_width": 0.5, "angle_threshold": 0.2, "angle_width": 0.2,
                             "cutoff_angle_start": 0.2},
    "none, rw 0.5, at 0.12, aw 0.12": {"num_prunings": 0, "radial_width": 0.5, "angle_threshold": 0.12,
                                       "angle_width": 0.12, "cutoff_angle_start": 0.12},
    "none, rw 0.5, at 0.12, aw 0.12, cs 0.03": {"num_prunings": 0, "radial_width": 0.5, "angle_threshold": 0.12,
                                                "angle_width": 0.12, "cutoff_angle_start": 0.03},  # ecse's defaults
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


def _frame_geometry(atoms):
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    periodic = bool(atoms.pbc.any())
    cell = torch.tensor(atoms.cell.array, dtype=torch.float64)[None] if periodic else None
    pbc = torch.tensor(atoms.pbc)[None] if periodic else None
    return pos, cell, pbc


def _probe_matrix():
    """``A``: the fixed seeded 3x3 matrix of the probe function."""
    return torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _probe_values(lf, a):
    """``G_i = sum_k w_ik tr(A F_ik)`` per atom (weights normalised per atom), ``[N]``."""
    return lf.combine((lf.rotation * a).sum((1, 2)))


def _kept_per_atom(lf, n: int):
    """Frame copies with weight > 0 (auxiliary copies excluded) of each of the ``n`` atoms."""
    kept = ((~lf.invariant) & (lf.weight > 0)).to(torch.long)
    return torch.zeros(n, dtype=torch.long).index_add_(0, lf.atom, kept)


def probe(atoms, params, span: float, points: int, paths: int, seed: int = 0) -> dict:
    """Frames per atom and curvature of the frame-averaged probe function along ``paths`` paths."""
    from ecse import local_frames

    pos, cell, pbc = _frame_geometry(atoms)
    batch = torch.zeros(len(atoms), dtype=torch.long)
    a = _probe_matrix()
    per_atom = _kept_per_atom(local_frames(pos, CUTOFF, batch, cell, pbc, params), len(atoms))
    s = torch.linspace(0, span, points, dtype=torch.float64)
    h = float(s[1] - s[0])
    worst = torch.zeros(len(atoms), dtype=torch.float64)
    for p in range(paths):
        direction = torch.randn(pos.shape, generator=torch.Generator().manual_seed(seed + p), dtype=torch.float64)
        direction = direction / direction.square().sum(1).mean().sqrt()
        g = torch.stack([_probe_values(local_frames(pos + si * direction, CUTOFF, batch, cell, pbc, params), a)
                         for si in s])
        curv = ((g[2:] - 2 * g[1:-1] + g[:-2]) / h**2).abs().amax(0)
        worst = torch.maximum(worst, curv)
    return {"frames_mean": float(per_atom.double().mean()), "frames_max": int(per_atom.max()),
            "curvature_max": float(worst.max()), "curvature_median": float(worst.median())}


def trajectory_probe(frames: list, params) -> dict:
    """Frames per atom and second differences per step of the frame-averaged probe function
    along the structures ``frames`` (consecutive steps of a trajectory)."""
    from ecse import local_frames

    a = _probe_matrix()
    n = len(frames[0])
    batch = torch.zeros(n, dtype=torch.long)
    g, r_in, counts = [], [], []
    for atoms in frames:
        pos, cell, pbc = _frame_geometry(atoms)
        lf = local_frames(pos, CUTOFF, batch, cell, pbc, params)
        g.append(_probe_values(lf, a))
        r_in.append(lf.inner_cutoff)
        counts.append(float(_kept_per_atom(lf, n).double().mean()))
    second, r_second = (_second_difference(torch.stack(x)) for x in (g, r_in))
    q = torch.quantile(second.flatten(), torch.tensor([0.5, 0.999], dtype=torch.float64))
    symbols = frames[0].get_chemical_symbols()
    step, atom = divmod(int(second.argmax()), n)
    r_step, r_atom = divmod(int(r_second.argmax()), n)
    return {"frames_mean": sum(counts) / len(counts), "d2_median": float(q[0]), "d2_p999": float(q[1]),
            "d2_max": float(second.max()), "worst_step": step + 1, "worst_atom": f"{symbols[atom]}{atom}",
            "r_in_d2_median": float(r_second.median()), "r_in_d2_max": float(r_second.max()),
            "r_in_worst_step": r_step + 1, "r_in_worst_atom": f"{symbols[r_atom]}{r_atom}"}


def _second_difference(values):
    """``|x(t+1) - 2 x(t) + x(t-1)|`` of a ``[steps, atoms]`` tensor, ``[steps - 2, atoms]``."""
    return (values[2:] - 2 * values[1:-1] + values[:-2]).abs()


def main_trajectory(args, settings: dict) -> list[dict]:
    from ase.io import read

    from ecse import FrameParams

    frames = read(args.trajectory, index=f"::{args.stride}")
    print(f"\n{args.trajectory}: {len(frames)} frames (every {args.stride}th step), {len(frames[0])} atoms\n")
    print("| setting | frames/atom | median d2G per step^2 | 99.9th percentile | largest (step, atom) "
          "| r_in: median d2 per step^2, A | largest (step, atom) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for setting, values in settings.items():
        r = trajectory_probe(frames, FrameParams(**values))
        r.update(setting=setting, trajectory=str(args.trajectory))
        rows.append(r)
        print(f"| {setting} | {r['frames_mean']:.2f} | {r['d2_median']:.2e} | {r['d2_p999']:.2e} | "
              f"{r['d2_max']:.2e} ({r['worst_step']}, {r['worst_atom']}) | {r['r_in_d2_median']:.2e} | "
              f"{r['r_in_d2_max']:.2e} ({r['r_in_worst_step']}, {r['r_in_worst_atom']}) |", flush=True)
    return rows


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
    parser.add_argument("--trajectory", type=Path, default=None,
                        help="probe along this trajectory's steps instead of random paths (--systems ignored)")
    parser.add_argument("--stride", type=int, default=1, help="with --trajectory: every this many steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from ecse import FrameParams

    print(f"torch {torch.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load average "
          f"{os.getloadavg()[0]:.2f}; span {args.span} A per atom, {args.points} points, {args.paths} paths")
    settings = {name: SETTINGS[name] for name in args.settings}
    for spec in args.custom:
        settings[spec] = parse_setting(spec)
    if args.trajectory is not None:
        rows = main_trajectory(args, settings)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1))
        return rows
    print("\n| system | atoms | setting | frames/atom (mean, max) | max abs d2G/ds2 | median over atoms |")
    print("|---|---|---|---|---|---|")
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
