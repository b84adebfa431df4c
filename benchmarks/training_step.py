"""Cost of one force-training step through a local ensemble (printed, never asserted).

    python benchmarks/training_step.py [--systems methane water192 cu32 cu300 ...] [--pet default|small]
                                       [--repeats 3] [--plain-systems methane cu32] [--layers-systems methane]

Training on forces differentiates twice: the loss holds the forces, the gradient of the
energy.  One step here is ``energy_and_forces(model, batch, create_graph=True)``, a
squared loss on both, and ``loss.backward()``, as in ``ecse.atomistic.training``.  For
each system (``benchmarks/solids.py``'s structures; ``cu32``: one 32-atom EMT Cu cell at
300 K, ``ecse.atomistic.emt.emt_structures("thermal", size=2)``, as the in-loop training
of ``benchmarks/tokens_in_loop.py`` uses 4-atom ones), side by side (interleaved steps,
median of ``--repeats``), the step time and the peak resident memory above the memory
before it, of

* ``bare``: PET alone (random weights, float64, ``solids.make_pet``);
* ``tokens``: ``ECSE(PET(frame_average="tokens"), 5.0, mode="local")``, what the training
  stack trains through with ``ecse.in_loop`` in local mode (same weights);
* ``tokens, plain`` (on ``--plain-systems``): the same, with the second derivatives of the
  token average taken by torch through the plain formulas over all frame copies
  (``ecse.backbones._token_average`` before its chunked second derivatives: one
  ``[copies, d_model]`` tensor per step of the formula);
* ``layers`` (on ``--layers-systems``): ``PET(frame_average="layers")``, every layer once
  per (atom, frame) copy.

Ratios are to ``bare``'s step in the same repeat.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import solids  # noqa: E402

SYSTEMS = ["methane", "water192", "cu32", *solids.EMT, *solids.PERFECT]


def structures(name: str, args) -> tuple[list, str]:
    if name == "cu32":
        from ecse.atomistic.emt import emt_structures

        return emt_structures("thermal", "Cu", temperature=300.0, n=1, size=2, seed=101), "EMT Cu 300 K, 32 atoms"
    return solids.structures(name, args.data, args.methane_count, args.quick)


@contextlib.contextmanager
def plain_second_derivatives():
    """Inside: the token average's differentiable backward is the plain torch composition."""
    from ecse.backbones import _token_average as T

    class Plain:
        @staticmethod
        def apply(shift, geometry, along, weight, edge, grad):
            return T._plain_first_order(shift, geometry, along, weight, edge, grad)

    saved, T._FrameAveragedSiLUGrad = T._FrameAveragedSiLUGrad, Plain
    try:
        yield
    finally:
        T._FrameAveragedSiLUGrad = saved


def training_step(model, data) -> None:
    from ecse.atomistic.derivatives import energy_and_forces

    energy, forces = energy_and_forces(model, data, create_graph=True)
    (energy.square().mean() + forces.square().mean()).backward()
    model.zero_grad(set_to_none=True)


def measure(name: str, pet, args) -> dict:
    from ecse import ECSE

    atoms_list, source = structures(name, args)
    data = solids.to_batch(atoms_list)
    tokens = ECSE(solids.with_frame_average(pet, "tokens"), solids.CUTOFF, mode="local")
    row = {"system": name, "source": source, "atoms": int(data.pos.shape[0] // data.num_graphs),
           "structures": data.num_graphs, **solids.frame_counts(data, tokens.params)}
    steps = {"bare": lambda: training_step(pet, data), "tokens": lambda: training_step(tokens, data)}
    if name in args.plain_systems:
        def plain():
            with plain_second_derivatives():
                training_step(tokens, data)
        steps["tokens, plain"] = plain
    if name in args.layers_systems:
        layers = ECSE(solids.with_frame_average(pet, "layers"), solids.CUTOFF, mode="local")
        steps["layers"] = lambda: training_step(layers, data)
    row.update(solids.side_by_side_calls(steps, args.repeats))
    return row


def markdown(rows: list[dict]) -> str:
    keys = ["bare", "tokens", "tokens, plain", "layers"]
    lines = ["| system | atoms | frames/atom | " + " | ".join(f"{k}: s (x bare), peak MiB" for k in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            if k not in r:
                cells.append("-")
                continue
            peak = "-" if r[k]["peak_mib"] is None else f"{r[k]['peak_mib']:.0f}"
            ratio = "" if k == "bare" else f" ({r[k]['ratio']:.2f}x)"
            cells.append(f"{r[k]['seconds']:.3g}{ratio}, {peak}")
        lines.append(f"| {r['system']} | {r['atoms']} | {r['local_mean']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=["methane", "water192", "cu32", "cu300", "cu1000", "alloy",
                                                         "liquid", "fcc"], choices=SYSTEMS)
    parser.add_argument("--pet", choices=["small", "default"], default="default")
    parser.add_argument("--repeats", type=int, default=3, help="side-by-side repeats (median)")
    parser.add_argument("--plain-systems", nargs="*", default=["methane", "cu32"],
                        help="systems that also run the plain second derivatives (memory grows with frame copies)")
    parser.add_argument("--layers-systems", nargs="*", default=["methane"])
    parser.add_argument("--methane-count", type=int, default=20, help="methane structures (one batch)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=solids.ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pet = solids.make_pet("small" if args.quick else args.pet, None)
    rows = []
    for name in args.systems:
        row = measure(name, pet, args)
        rows.append(row)
        cells = [f"{k} {row[k]['seconds']:.3g} s ({row[k]['ratio']:.2f}x, peak {row[k]['peak_mib'] or 0:.0f} MiB)"
                 for k in ("bare", "tokens", "tokens, plain", "layers") if k in row]
        print(f"{name}: " + ", ".join(cells), flush=True)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
