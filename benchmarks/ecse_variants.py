"""Re-evaluate a PET checkpoint of ``benchmarks/accuracy.py`` wrapped with several ECSE settings.

    python benchmarks/ecse_variants.py CHECKPOINT TEST.xyz [--n-test N] [--n-global N]
                                       [--batch-size B] [--threads T] [--skip-no-pruning] [--out F]

Evaluates, with the same weights: bare PET, ECSE global with the published pruning
(threshold 0.9, 4 rounds), ECSE global without pruning (the atomistic stack's default)
and ECSE local mode.  The global ensemble runs PET once per retained frame of a
structure (about 70 frames per 192-atom water box with pruning, 770 without), so
``--n-global`` limits the global rows to the first N test structures; every row also
gives bare PET on exactly its structures, so each ratio compares like with like.
Prints one JSON line per row and writes ``--out`` (default
``runs/accuracy/ecse_variants_<test file>.json``).
Energy MAE is per atom (mean over structures, meV), force MAE per component (meV/Å);
``frames`` is the mean number of frames (global) or frame copies (local) per structure.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _peers import metrics  # noqa: E402
from ecse import ECSE  # noqa: E402
from ecse.atomistic import load_dataset  # noqa: E402
from ecse.atomistic.training import load_model  # noqa: E402

KEYS = ("REF_energy", "REF_forces")
VARIANTS = {"global, published pruning": {}, "global, no pruning": {"num_prunings": 0}, "local": {"mode": "local"}}


def evaluate(model: torch.nn.Module, data: list, batch_size: int) -> dict:
    """MAEs over ``data`` in batches, and the mean frames per structure over all batches."""
    n_struct, n_comp, e_sum, f_sum, frames, start = 0, 0, 0.0, 0.0, 0.0, time.perf_counter()
    for i in range(0, len(data), batch_size):
        chunk = data[i:i + batch_size]
        m = metrics(model, chunk, batch_size, (1.0, 1.0), (0.1, 1.0), *KEYS)
        comps = sum(d[KEYS[1]].numel() for d in chunk)
        e_sum, f_sum = e_sum + m["energy_mae_per_atom"] * len(chunk), f_sum + m["forces_mae"] * comps
        n_struct, n_comp = n_struct + len(chunk), n_comp + comps
        stats = getattr(model, "last_stats", None) or {}
        frames += stats.get("frames_per_graph", float("nan")) * len(chunk)
    return {"n": n_struct, "E_meV_atom": 1e3 * e_sum / n_struct, "F_meV_A": 1e3 * f_sum / n_comp,
            "frames": frames / n_struct, "s": time.perf_counter() - start}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("test_file")
    parser.add_argument("--n-test", type=int, default=None, help="test structures (default: all)")
    parser.add_argument("--n-global", type=int, default=None, help="structures for the global rows (default: all; 0: no global rows)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-no-pruning", action="store_true", help="skip the global row without pruning")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default: runs/accuracy/ecse_variants_<test file>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bare = load_model(args.checkpoint, wrap=False).eval()
    dtype = next(bare.parameters()).dtype  # evaluate in the checkpoint's precision
    test = load_dataset(args.test_file, {KEYS[0]: "graph", KEYS[1]: "node"}, dtype=dtype)[:args.n_test]
    out = {}
    for label, options in VARIANTS.items():
        if label.startswith("global") and args.n_global == 0 or args.skip_no_pruning and label == "global, no pruning":
            continue
        data = test[:args.n_global] if label.startswith("global") else test
        wrapped = ECSE(bare, cutoff=5.0, chunk_size=4096, **options).eval()
        row = evaluate(wrapped, data, args.batch_size)
        row["bare"] = evaluate(bare, data, 50)
        row["bare"].pop("frames")
        row["F_change_percent"] = 100 * (row["F_meV_A"] / row["bare"]["F_meV_A"] - 1)
        out[label] = row
        print(label, json.dumps(row), flush=True)
    path = args.out or ROOT / "runs" / "accuracy" / f"ecse_variants_{Path(args.test_file).stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
