"""Cost of exact symmetrisation of PyG point models: bare, global ECSE, local ECSE (printed only).

    python benchmarks/local_pointcloud.py [--threads 1] [--repeats 3] [--sizes 256 1024 4096]
                                          [--models pointnet2 dgcnn point_transformer]

One synthetic shape (``ecse.demos.shapes.sample_shape("ellipsoid", n)``, noise 0.01) per
size, float32, inference (``torch.no_grad``).  The ECSE cutoff is the median radius that
holds 16 neighbours (:func:`ecse.demos.shape_demo.choose_cutoff`) with
``length_scale = cutoff / 5``, as in ``ecse shapes``.  Backbones (``hidden=32``):
PointNet2 with ball radii ``(cutoff, 2 cutoff)``, DGCNN with ``k=16`` (feature-space
kNN ``--dgcnn-knn``: ``dense`` matrix products, the default, or ``tree``), PointTransformer
with ``k=16``.  Modes: ``bare``; ``global`` (``ECSE(model, mode="global")``, the whole
model once per retained frame of the cloud, chunks of 65536 points); ``local``
(:class:`ecse.pyg.LocalPointModel`: each geometric layer once per frame of each of its
centres).  For each model, mode and size a fresh subprocess runs one warm-up and
``--repeats`` evaluations and reports the median time and the peak resident memory above
the process's state before the first evaluation (on Linux the peak is reset there, after
returning free pages with ``malloc_trim``, so the set-up's own allocations do not hide it;
elsewhere ``ru_maxrss``, a lower bound).  Above
``--global-max-points`` the global ensemble's time is *estimated* as (retained frames) x
(bare time), marked ``est.``; its frame count is always computed exactly.  ``frames`` is frames per
graph (global) or per layer centre (local, mean over the adapted layer calls).

After the table, one line per backbone gives the issue's targets: local time / bare time
at 1024 points (target <= 4) and the local time per point at the largest size over that
at the smallest (256 -> 4096 by default; target <= 1.3).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _fresh_process import reset_peak, status_mib

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("pointnet2", "dgcnn", "point_transformer")


def _reset_peak() -> float:
    """:func:`reset_peak`, falling back to the peak so far where the resident memory cannot be read."""
    now = reset_peak(trim=True)
    return now if now is not None else _peak_mib()


def _peak_mib() -> float:
    peak = status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup(name: str, size: int, feature_knn: str = "dense"):
    import torch
    from torch_geometric.data import Batch, Data

    from ecse.backbones import DGCNN, PointNet2, PointTransformer
    from ecse.demos.shape_demo import choose_cutoff
    from ecse.demos.shapes import sample_shape

    g = torch.Generator().manual_seed(0)
    pos = sample_shape("ellipsoid", size, g)
    pos = (pos + 0.01 * torch.randn(pos.shape, generator=g, dtype=pos.dtype)).float()
    data = Batch.from_data_list([Data(pos=pos)])
    cutoff = choose_cutoff([data], 16)
    torch.manual_seed(0)
    if name == "pointnet2":
        model = PointNet2(8, radii=(cutoff, 2 * cutoff), hidden=32)
    elif name == "dgcnn":
        model = DGCNN(8, k=16, hidden=32, feature_knn=feature_knn)
    else:
        model = PointTransformer(8, k=16, hidden=32)
    return model.eval(), data, cutoff


def worker(args) -> None:
    import torch

    from ecse import ECSE, FrameParams, global_frames
    from ecse.pyg import LocalPointModel

    torch.set_num_threads(args.threads)
    bare, data, cutoff = _setup(args.model, args.size, args.dgcnn_knn)
    if args.estimate_only:  # frames of the global ensemble only (its time: frames x bare)
        fs = global_frames(data.pos.double(), cutoff, params=FrameParams.scaled(cutoff / 5))
        print(json.dumps({"model": args.model, "mode": "global", "points": args.size,
                          "frames": int(fs.frames.weight.numel())}))
        return
    if args.worker == "bare":
        model = bare
    elif args.worker == "global":
        model = ECSE(bare, cutoff=cutoff, out_shape=(8,), length_scale=cutoff / 5, aux=None).eval()
    else:
        model = LocalPointModel(bare, cutoff=cutoff, params=FrameParams.scaled(cutoff / 5)).eval()
    base = _reset_peak()
    times = []
    with torch.no_grad():
        for i in range(args.repeats + 1):
            start = time.perf_counter()
            model(data)
            if i:  # the first call is a warm-up
                times.append(time.perf_counter() - start)
    result = {"model": args.model, "mode": args.worker, "points": args.size, "seconds": statistics.median(times),
              "peak_mib": _peak_mib() - base, "frames": None}
    if args.worker == "global":
        result["frames"] = model.last_stats["frames_per_graph"]
    elif args.worker == "local":
        result["frames"] = model.last_stats["frames_per_centre"]
    print(json.dumps(result))


def _run(args, model: str, mode: str, size: int, estimate_only: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--model", model, "--size", str(size),
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--dgcnn-knn", args.dgcnn_knn] \
        + (["--estimate-only"] * estimate_only)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        return {"model": model, "mode": mode, "points": size, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--global-max-points", type=int, default=256,
                        help="above this size the global time is estimated as (frames) x (bare time)")
    parser.add_argument("--dgcnn-knn", choices=["dense", "tree"], default="dense",
                        help="DGCNN's feature-space neighbour search (DGCNN(feature_knn=...))")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--worker", choices=["bare", "global", "local"], help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--estimate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    import torch

    print(f"torch {torch.__version__}, cpu, {args.threads} thread(s), float32, inference, "
          f"median of {args.repeats}; DGCNN feature kNN {args.dgcnn_knn}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'model':>17} {'points':>6} {'mode':>6} {'frames':>7} {'time (s)':>9} {'x bare':>7} {'peak MiB':>9}")
    rows = []
    for model in args.models:
        for size in args.sizes:
            bare = None
            for mode in ("bare", "local", "global"):
                estimate = mode == "global" and size > args.global_max_points
                row = _run(args, model, mode, size, estimate)
                rows.append(row)
                if "error" in row:
                    print(f"{model:>17} {size:>6} {mode:>6}  error: {row['error']}")
                    continue
                bare = row["seconds"] if mode == "bare" else bare
                if estimate and bare:
                    row.update(seconds=row["frames"] * bare, peak_mib=None, estimated=True)
                frames = "-" if row["frames"] is None else f"{row['frames']:.2f}"
                ratio = f"{row['seconds'] / bare:.1f}" if bare else "-"
                peak = "-" if row["peak_mib"] is None else f"{row['peak_mib']:.1f}"
                print(f"{model:>17} {size:>6} {mode:>6} {frames:>7} {row['seconds']:>9.3f} {ratio:>7} "
                      f"{peak:>9}{' est.' if estimate else ''}", flush=True)
    _summary(rows, args.models, args.sizes)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _summary(rows: list[dict], models, sizes) -> None:
    """Local / bare at 1024 points and the time per point, largest over smallest size."""
    seconds = {(r["model"], r["mode"], r["points"]): r["seconds"] for r in rows if "error" not in r}
    small, large = min(sizes), max(sizes)

    def per_point(model, mode):
        a, b = seconds.get((model, mode, small)), seconds.get((model, mode, large))
        return f"{(b / large) / (a / small):.2f}" if a and b and large > small else "-"

    def ratio(model, size):
        local, bare = seconds.get((model, "local", size)), seconds.get((model, "bare", size))
        return f"{local / bare:.2f}" if local and bare else "-"

    print(f"\n{'model':>17} {'local/bare @1024':>17} {f'local s/point {large}/{small}':>24} "
          f"{f'bare s/point {large}/{small}':>23}   local/bare per size ({', '.join(map(str, sizes))})")
    for model in models:
        print(f"{model:>17} {ratio(model, 1024):>17} {per_point(model, 'local'):>24} {per_point(model, 'bare'):>23}"
              f"   {' '.join(ratio(model, n) for n in sizes)}")
    print("(targets: local/bare <= 4 at 1024 points; local time per point ratio <= 1.3)")

if __name__ == "__main__":
    main()
