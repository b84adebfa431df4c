"""Replay NVE runs on several models: each surface's velocity-Verlet error along one path (printed, never asserted).

    python benchmarks/replay_nve.py TRAJ.extxyz [TRAJ.extxyz ...] [--system water] [--models bare local]
                                    [--timestep 0.5] [--start 0] [--stop N] [--checkpoints DIR]

Two models run from the same start soon follow different paths (their forces differ a
little and the dynamics is chaotic), and the drift of one run varies from one set of
starting velocities to the next, which makes a drift ratio of two runs a noisy comparison
of two surfaces.
This replays each given trajectory (every step of one velocity-Verlet run, as
``benchmarks/smoothness.py --trajectories`` and ``tokens_in_loop.py --trajectories``
write them) on every model with :func:`ecse.atomistic.md.verlet_step_errors`: the energy
each step would gain on that model's surface along the same positions.  On the model that
made the run the cumulative error is that run's total energy; on the others it is what
their surfaces would make of the same path.

Models are ``benchmarks/smoothness.py``'s, built the same way (its checkpoints, its
restraints on the probe structure of ``--system``, ``ECSE``'s defaults): ``bare`` PET,
``local`` (``ECSE(pet, 5.0, mode="local")``, per-copy layers) and ``global``
(``ECSE(pet, 5.0)``).  Printed for each trajectory and model: the drift of the cumulative
error (least-squares slope, eV/atom/ps, ± its standard error from 0.1 ps blocks), its
largest excursion (eV/atom), both as ratios to bare PET's along the same path, and the
per-step correlation with bare PET's errors.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import smoothness as S  # noqa: E402

MODELS = ("bare", "local", "global")


def models(system: str, names, args) -> dict:
    """``{name: ECSECalculator}`` of ``smoothness.py``'s restrained models for ``system``."""
    from ecse.atomistic import ECSECalculator

    atoms, _ = S.probe_structure(system, args)
    pet, _ = S.trained_pet(S.MODEL_OF[system], args)
    restraint = S.restraint_pairs(system, atoms)
    built = {"bare": pet, "local": S.wrapped(pet, "local"), "global": S.wrapped(pet, "global")}
    return {name: ECSECalculator(S.Restrained(built[name], **restraint) if restraint else built[name])
            for name in names}


def replay(path: Path, calculators: dict, args, log=print) -> dict:
    """Cumulative velocity-Verlet error of each calculator along the trajectory in ``path``."""
    from ase.io import read

    from ecse.atomistic.md import energy_drift, energy_drift_stderr, energy_excursion, verlet_step_errors

    frames = read(path, index=f"{args.start}:{'' if args.stop is None else args.stop + 1}")
    n = len(frames[0])
    time_ps = np.arange(len(frames)) * args.timestep / 1000
    rows = {}
    for name, calc in calculators.items():
        errors = verlet_step_errors(frames, calc, args.timestep) / n
        energy = np.concatenate([[0.0], np.cumsum(errors)])
        rows[name] = {"errors": errors, "drift": energy_drift(time_ps, energy),
                      "stderr": energy_drift_stderr(time_ps, energy), "excursion": energy_excursion(energy)}
    log(f"\n## {path.name}: steps {args.start}-{args.start + len(frames) - 1} ({time_ps[-1]:.3f} ps), {n} atoms")
    log("| model | path drift, eV/atom/ps (x bare) | path excursion, eV/atom (x bare) "
        "| per-step correlation with bare |")
    log("|---|---|---|---|")
    for name, r in rows.items():
        ref = rows.get("bare") if name != "bare" else None
        drift, excursion, corr = f"{r['drift']:+.2e} ± {r['stderr']:.1e}", f"{r['excursion']:.2e}", "-"
        if ref is not None:
            drift += f" ({r['drift'] / ref['drift']:.2f}x)"
            excursion += f" ({r['excursion'] / ref['excursion']:.2f}x)"
            corr = f"{np.corrcoef(r['errors'], ref['errors'])[0, 1]:.3f}"
        log(f"| {name} | {drift} | {excursion} | {corr} |")
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trajectories", nargs="+", type=Path, help="extxyz trajectories, every step of one run")
    parser.add_argument("--system", default="water", choices=S.SYSTEMS,
                        help="smoothness.py's system (models, restraints)")
    parser.add_argument("--models", nargs="+", default=["bare", "local"], choices=MODELS)
    parser.add_argument("--timestep", type=float, default=0.5, help="the runs' time step (fs)")
    parser.add_argument("--start", type=int, default=0, help="first step replayed")
    parser.add_argument("--stop", type=int, default=None, help="last step replayed (default: the last)")
    parser.add_argument("--checkpoints", type=Path, default=Path("/tmp/ecse_smoothness_ckpt"),
                        help="smoothness.py's checkpoints (trained there if absent)")
    parser.add_argument("--train-seconds", type=float, default=150.0,
                        help="as smoothness.py's, if a PET must be trained")
    parser.add_argument("--cu-size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=S.ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    args.retrain, args.frame_average = False, "layers"
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, float64; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    calculators = models(args.system, args.models, args)
    return {str(path): replay(path, calculators, args) for path in args.trajectories}


if __name__ == "__main__":
    main()
