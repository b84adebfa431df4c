"""Measured equivariance errors of bare and ECSE-wrapped backbones (printed, not asserted).

    python benchmarks/equivariance.py [--clouds 20] [--points 16]

For every backbone and output type: the largest relative error over random clouds and
random rotations, ``||f(X R^T) - R.f(X)|| / ||R.f(X)||`` (``R.`` the independent action
of ``ecse.testing.transform_output``), in float64 and float32, for the bare backbone and
for ``ECSE(backbone)`` with the same weights.  Also the O(3) mode under reflections.
"""
from __future__ import annotations

import argparse
import statistics

import torch
from torch_geometric.data import Batch, Data

from ecse.backbones import DGCNN, PointNet2, PointTransformer
from ecse import ECSE
from ecse.testing import random_orthogonal, random_rotation, relative_error, transform_output

OUTPUTS = {"scalar": 2, "vector": 3, "rank2": 9, "rank2-symmetric": 6, "1x0e+1x1o+1x2e": 9}
BACKBONES = {
    "PointNet++": lambda c: PointNet2(c, ratios=(0.75, 0.5), radii=(1.5, 3.0), hidden=16),
    "DGCNN": lambda c: DGCNN(c, k=6, hidden=16),
    "PointTransformer": lambda c: PointTransformer(c, k=6, hidden=16),
}


def errors(model, clouds, output, dtype, improper=False, seed=0) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    components = model.spec.components if isinstance(model, ECSE) else OutputView(output).components
    for pos in clouds:
        R = random_orthogonal(generator=gen, improper=True) if improper else random_rotation(generator=gen)
        a = components(model(Batch.from_data_list([Data(pos=pos.to(dtype))])))
        b = components(model(Batch.from_data_list([Data(pos=(pos @ R.T).to(dtype))])))
        out.append(relative_error(b.double(), transform_output(a.double(), R, output)))
    return out


class OutputView:
    def __init__(self, output):
        from ecse.covariant import OutputSpec

        self.components = OutputSpec(output).components


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clouds", type=int, default=20)
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(1)
    clouds = [torch.randn(args.points, 3, generator=gen, dtype=torch.float64) * 1.3 for _ in range(args.clouds)]
    print(f"relative error over {args.clouds} random clouds of {args.points} points, one rotation each: "
          "max (median for ECSE float32)\n")
    print(f"{'backbone':17s} {'output':16s} {'bare f64':>9s} {'ECSE f64':>9s} {'bare f32':>9s} {'ECSE f32':>9s} {'(median)':>9s}")
    with torch.no_grad():
        for name, make in BACKBONES.items():
            for output, channels in OUTPUTS.items():
                row = []
                for dtype in (torch.float64, torch.float32):
                    torch.manual_seed(0)
                    backbone = make(channels).to(dtype)
                    wrapped = ECSE(backbone, cutoff=3.0, output=output,
                                   out_shape=(channels,) if output == "scalar" else None).to(dtype)
                    row += [errors(backbone, clouds, output, dtype), errors(wrapped, clouds, output, dtype)]
                worst = [max(r) for r in row]
                print(f"{name:17s} {output:16s} {worst[0]:9.1e} {worst[1]:9.1e} {worst[2]:9.1e} {worst[3]:9.1e} "
                      f"{statistics.median(row[3]):9.1e}")
        torch.manual_seed(0)
        backbone = DGCNN(3, k=6, hidden=16).double()
        so3 = ECSE(backbone, cutoff=3.0, output="vector")
        o3 = ECSE(backbone, cutoff=3.0, output="vector", o3=True)
        print("\nreflections (DGCNN, vector, float64): "
              f"SO(3) mode {max(errors(so3, clouds, 'vector', torch.float64, improper=True)):.1e}, "
              f"O(3) mode {max(errors(o3, clouds, 'vector', torch.float64, improper=True)):.1e}")


if __name__ == "__main__":
    main()
