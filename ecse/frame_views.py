"""Training a backbone for its ECSE ensemble at the cost of one evaluation per cloud."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from .frameset import FrameParams, global_frames

__all__ = ["FrameViewSampler"]


class FrameViewSampler:
    """Random ECSE frame views of fixed clouds: cheap training of a backbone for ECSE.

    :class:`ecse.ECSE` feeds its backbone each cloud seen from every retained
    local frame ``(origin o, axes F)``, i.e. ``(pos - pos[o]) @ F``, and averages
    the outputs with the frame weights.  These views do not depend on the
    orientation of the input.  Training the backbone on one view per cloud and
    epoch, drawn with probability proportional to the frame weights, is a
    stochastic version of training the whole ensemble at the cost of one
    backbone evaluation per cloud, instead of one per frame.

    Parameters
    ----------
    data_list : sequence of Data
        Clouds with ``pos`` and ``y``; the frames are computed once, here.
    cutoff : float
        ECSE cutoff.
    seed : int, default 0
        Seed of the random draws.
    views_per_shape : int, default 1
        Independent views drawn per cloud and call.
    **ecse_kwargs
        Frame settings as for :class:`ecse.ECSE` (``beta``, ``radial_width``,
        ...), including ``length_scale``.

    Notes
    -----
    A cloud without any usable frame (handled by ECSE's auxiliary model) is
    passed through unchanged.
    """

    def __init__(self, data_list: Sequence[Data], cutoff: float, seed: int = 0,
                 views_per_shape: int = 1, **ecse_kwargs):
        params = FrameParams.scaled(**ecse_kwargs)
        self.data_list = list(data_list)
        self.generator = torch.Generator().manual_seed(seed)
        self.views_per_shape = int(views_per_shape)
        self.frames: list[tuple[Tensor, Tensor, Tensor]] = []
        for start in range(0, len(self.data_list), 32):
            batch = Batch.from_data_list(self.data_list[start:start + 32])
            with torch.no_grad():
                fs = global_frames(batch.pos, cutoff, batch.batch, batch.num_graphs, params=params)
            for i in range(batch.num_graphs):
                sel = fs.graph == i
                self.frames.append((fs.frames.center[sel] - batch.ptr[i], fs.frames.rotation[sel],
                                    fs.frames.weight[sel]))

    @property
    def frames_per_shape(self) -> float:
        """Mean number of retained frames per cloud."""
        return sum(len(w) for _, _, w in self.frames) / max(len(self.frames), 1)

    def sample(self) -> list[Data]:
        """Random frame views of every cloud (``pos`` in the frame, ``y`` kept)."""
        views = []
        for d, (origin, rotation, weight) in zip(self.data_list, self.frames):
            if weight.numel() == 0:
                views.extend([d] * self.views_per_shape)
                continue
            ks = torch.multinomial(weight.double(), self.views_per_shape, replacement=True,
                                   generator=self.generator)
            for k in ks.tolist():
                pos = (d.pos - d.pos[origin[k]]) @ rotation[k].to(d.pos.dtype)
                views.append(Data(pos=pos, y=d.y))
        return views

    def __call__(self, epoch: int) -> list[Data]:
        return self.sample()
