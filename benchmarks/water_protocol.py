"""PET on bulk water with the accuracy harness's protocol, for longer than its CPU budget
(on a GPU): does PET learn the forces at a given energy weight and distance basis?

    python benchmarks/water_protocol.py [--num-radial 32] [--energy-weight 0.1] [--lr 1e-3]
                                        [--epochs 40] [--max-time 330] [--device cuda]
                                        [--split-dir DIR | --data ../shared/data]

Runs ``ecse.atomistic.train`` with ``benchmarks/accuracy.py``'s PET settings
(``PET_HYPER``) and protocol (seeded 300/50/50 split, batch 1, rotation augmentation,
1-epoch warm-up, cosine decay over ``--epochs``, clipping at 1.0, float32), stopping at
``--max-time`` seconds; prints the validation line of every epoch and the test metrics of
the best-validation state. ``--split-dir`` reads ``water_{train,val,test}.xyz`` written by
the harness (``--workdir``), for a machine without ``../shared``. A diagnostic, run by hand.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from accuracy import COMMON, PET_HYPER, pet_train_options, write_splits  # noqa: E402
from ecse.atomistic.training import train  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-radial", type=int, default=32)
    parser.add_argument("--energy-weight", type=float, default=COMMON["energy_weight"])
    parser.add_argument("--lr", type=float, default=COMMON["lr"])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--max-time", type=float, default=330.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--split-dir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--output-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    split_dir = args.split_dir or Path(tempfile.mkdtemp(prefix="ecse-water-"))
    if args.split_dir is None:
        write_splits("water", args.data, split_dir, COMMON["seed"])
    paths = {part: str(split_dir / f"water_{part}.xyz") for part in ("train", "val", "test")}
    options = pet_train_options("water", paths, {**PET_HYPER, "num_radial": args.num_radial}, epochs=args.epochs,
                                weights=(args.energy_weight, COMMON["forces_weight"]), max_time=args.max_time,
                                output_dir=args.output_dir or Path(tempfile.mkdtemp(prefix="ecse-water-pet-")))
    options["data"]["test_file"], options["optimiser"]["lr"], options["run"]["device"] = \
        paths["test"], args.lr, args.device
    start = time.perf_counter()
    out = train(options, log=lambda m: print(f"[{time.perf_counter() - start:.0f}s] {m}", flush=True))
    test = out["test"]
    print(f"steps {out['global_step']}, epochs {out['epochs_completed']}, test ({out['test_model']}): "
          f"E {1e3 * test['energy_mae_per_atom']:.2f} meV/atom, F {1e3 * test['forces_mae']:.1f} meV/A", flush=True)
    return out


if __name__ == "__main__":
    main()
