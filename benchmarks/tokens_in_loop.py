"""PET's frame-averaged tokens wrapped after the fact against trained in the loop (printed, never asserted).

    python benchmarks/tokens_in_loop.py [--systems methane water cu300] [--checkpoints DIR]
                                        [--train-seconds 150] [--water-train-seconds 2400]
                                        [--nve-ps 2.0] [--points 200] [--nve-models ...]
                                        [--nve-logs DIR] [--trajectories DIR]

``PET(frame_average="tokens")`` averages every edge token over an atom's frames
(:mod:`ecse.backbones._pet_layer`): a different function from bare PET, so the weights
must be trained for it.  This compares, on the probe structures of
``benchmarks/smoothness.py`` (methane, the 24-atom water cell, 4-atom EMT Cu at 300 K) and
with its small PETs:

* **bare-trained**: ``smoothness.py``'s PET (bare, rotation-augmented; the same
  checkpoints under ``--checkpoints``), evaluated bare, wrapped with per-copy layers
  (``ECSE(pet, 5.0, mode="local")``, PET's default) and wrapped with averaged tokens;
* **in-loop**: a PET with ``frame_average="tokens"`` trained through
  ``ECSE(pet, 5.0, mode="local")`` with the same recipe, data and seed (saved as
  ``{model}_in_loop_tokens.pt``), evaluated wrapped and bare (same weights).

Measured: energy and force MAE on held-out structures (methane: the first 50 of the
bundled test set; water: 192-atom frames 300-304; Cu: 10 EMT 300 K cells, seed 77), seconds
per energy + forces call on the probe, the curvature ratio along ``smoothness.py``'s path
(``max |d2E/ds2|`` of the wrapped model over a bare model's), and NVE (velocity Verlet,
0.5 fs, 300 K start, ``smoothness.py``'s restraints): drift (eV/atom/ps) and largest
excursion (eV/atom).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import smoothness as S  # noqa: E402

MODELS = ("bare", "layers", "tokens", "in-loop tokens", "in-loop bare")
LABELS = {"bare": "bare PET (bare-trained)", "layers": "ECSE local, layers (bare-trained)",
          "tokens": "ECSE local, tokens (bare-trained)", "in-loop tokens": "ECSE local, tokens (in-loop)",
          "in-loop bare": "bare PET (in-loop weights)"}
#: (model, reference): curvature ratios printed
CURVATURES = (("layers", "bare"), ("tokens", "bare"), ("in-loop tokens", "in-loop bare"), ("in-loop tokens", "bare"))


def in_loop_pet(name: str, args, seconds: float):
    """Load or train (and save) the PET trained through ``ECSE(pet, 5.0, mode="local")``
    (``smoothness.trained_pet``, checkpoint ``{model}_in_loop_tokens.pt``)."""
    from ecse import ECSE

    options = argparse.Namespace(**{**vars(args), "train_seconds": seconds})
    pet, _ = S.trained_pet(name, options, in_loop=lambda p: ECSE(p, S.CUTOFF, mode="local"), suffix="_in_loop_tokens")
    return pet


def test_structures(name: str, args) -> list:
    from ase.io import read

    from ecse.atomistic.datasets import bundled_dataset
    from ecse.atomistic.emt import emt_structures

    if name == "methane":
        return read(bundled_dataset("methane")["test"], index=":50")
    if name == "water":
        return S.water_frames(args.data)[300:305]
    return emt_structures("thermal", "Cu", temperature=300.0, n=10, size=args.cu_size, seed=77)


def errors(model, structures) -> tuple[float, float]:
    """Energy MAE (meV/atom) and force-component MAE (meV/A)."""
    from ecse.atomistic.derivatives import energy_and_forces

    e_err, f_err = [], []
    for atoms in structures:
        energy, forces = energy_and_forces(model, S.to_data(atoms))
        e_err.append(abs(float(energy.detach()) - atoms.get_potential_energy()) / len(atoms))
        f_err.append(np.abs(forces.detach().numpy() - atoms.get_forces()).mean())
    return 1000 * float(np.mean(e_err)), 1000 * float(np.mean(f_err))


def measure(name: str, args) -> dict:
    from ecse import ECSE

    atoms, source = S.probe_structure(name, args)
    print(f"\n## {name}: {source}", flush=True)
    model_name = S.MODEL_OF[name]
    seconds = args.water_train_seconds if model_name == "water" else args.train_seconds
    # smoothness.py's loader (trains if absent); PET built with args.frame_average ("tokens")
    trained, _ = S.trained_pet(model_name, argparse.Namespace(**{**vars(args), "train_seconds": seconds}))
    layers = S.make_pet(0, "layers", model_name)
    layers.load_state_dict(trained.state_dict())
    loop = in_loop_pet(model_name, args, seconds)
    models = {"bare": trained, "layers": ECSE(layers.eval(), S.CUTOFF, mode="local").eval(),
              "tokens": ECSE(trained, S.CUTOFF, mode="local").eval(),
              "in-loop tokens": ECSE(loop, S.CUTOFF, mode="local").eval(), "in-loop bare": loop}
    data, held_out = S.to_data(atoms), test_structures(model_name, args)
    row = {"system": name, "errors": {}, "ms": {}, "curvature": {}, "nve": {}}
    for key, model in models.items():
        row["errors"][key] = errors(model, held_out)
        row["ms"][key] = 1000 * float(np.median([S.seconds_per_call(model, data) for _ in range(3)]))
        e, f = row["errors"][key]
        print(f"  {LABELS[key]:36s} E MAE {e:8.1f} meV/atom, F MAE {f:6.0f} meV/A, {row['ms'][key]:6.0f} ms/call",
              flush=True)
    prof = S.Profiles(atoms, args)
    for key, ref in CURVATURES if args.points > 0 else ():
        r = prof.ratio(key, models[key], models[ref], print)
        row["curvature"][f"{key}/{ref}"] = r
        print(f"  curvature {LABELS[key]} over {LABELS[ref]}: {r.get('ratio', float('nan')):.3g} "
              f"({r.get('curvature', float('nan')):.4g} vs {r.get('bare_curvature', float('nan')):.4g}, "
              f"{r.get('points', 0)} points)", flush=True)
    restraint = S.restraint_pairs(name, atoms)
    for key in args.nve_models if args.nve_ps > 0 else ():
        r = S.nve(models[key], atoms, S.TEMPERATURE[name], args.nve_ps, args, print, key.replace(" ", "_"), restraint)
        row["nve"][key] = r
        if "drift" in r:
            print(f"  NVE {LABELS[key]:36s} {r['ps']:.2f} ps: drift {S.drift_text(r)} eV/atom/ps, excursion "
                  f"{r['excursion']:.2e} eV/atom, <T> {r['mean_T']:.0f} K [{r['seconds']:.0f} s]", flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=["methane", "water", "cu300"],
                        choices=["methane", "water", "cu300", "cu1000"])
    parser.add_argument("--checkpoints", type=Path, default=Path("/tmp/ecse_smoothness_ckpt"),
                        help="smoothness.py's checkpoints (bare PETs; trained here if absent) and the in-loop ones")
    parser.add_argument("--train-seconds", type=float, default=150.0, help="training time per PET (s)")
    parser.add_argument("--water-train-seconds", type=float, default=2400.0,
                        help="training time of the water PETs (s): 192-atom frames, about 1-4 s per step")
    parser.add_argument("--points", type=int, default=200, help="points of each curvature path (0: none)")
    parser.add_argument("--nve-ps", type=float, default=2.0, help="NVE length (ps); 0: no NVE")
    parser.add_argument("--nve-models", nargs="*", default=["bare", "in-loop tokens", "in-loop bare"],
                        choices=MODELS, help="models run in NVE (layers costs frames-per-atom times bare)")
    parser.add_argument("--nve-logs", type=Path, default=None, help="stream each NVE run's energies here")
    parser.add_argument("--trajectories", type=Path, default=None,
                        help="write each NVE trajectory here (extxyz; benchmarks/frame_probe.py --trajectory reads them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=S.ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # smoothness.py's helpers read these
    args.cu_size, args.timestep, args.nve_budget = 1, 0.5, 1e9
    args.span, args.path_seed, args.orientations, args.budget = 0.2, 0, 0, 1e9
    args.retrain, args.frame_average = False, "tokens"
    print(f"torch {torch.__version__}, 1 thread, float64, PET(**SMALL); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {os.getloadavg()[0]:.2f}")
    return [measure(name, args) for name in args.systems]


if __name__ == "__main__":
    main()
