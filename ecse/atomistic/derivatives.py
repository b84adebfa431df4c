"""Energies, forces and stress of any energy model by autograd: the one home of these derivatives.

Every energy model (a bare backbone such as :class:`ecse.backbones.PET`, or one wrapped in
:class:`ecse.ECSE`) maps a ``Data``/``Batch`` to per-structure energies ``[B]``. The
calculator, training, evaluation and MD all take forces and stress from here.

Conventions: forces ``F = -dE/dpos`` in the units of energy over length; stress in
ASE's sign convention, ``sigma = (1/V) dE/d(epsilon)`` for a symmetric strain ``epsilon``
applied as ``x (I + epsilon)`` to positions and cell rows.

Examples
--------
>>> import torch
>>> from torch_geometric.data import Data
>>> model = lambda d: 0.5 * d.pos.pow(2).sum().reshape(1)   # harmonic well
>>> e, f = energy_and_forces(model, Data(pos=torch.ones(2, 3, dtype=torch.float64)))
>>> f.tolist()
[[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["energy_and_forces", "energy_forces_stress"]


def energy_and_forces(model: nn.Module, data, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Energies ``[B]`` and forces ``F = -dE/dpos`` ``[N, 3]`` by autograd
    (``create_graph=True`` to train on forces)."""
    data = data.clone()
    data.pos = data.pos.detach().requires_grad_(True)
    energy = model(data)
    (grad,) = torch.autograd.grad(energy.sum(), data.pos, create_graph=create_graph)
    return energy, -grad


def energy_forces_stress(model: nn.Module, data, create_graph: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r"""Energies ``[B]``, forces ``[N, 3]`` and stress ``[B, 3, 3]`` of periodic structures.

    Positions and cell are strained by :math:`(I + \varepsilon)` with symmetric
    :math:`\varepsilon`; :math:`\sigma = \frac{1}{V} \partial E / \partial \varepsilon`
    at :math:`\varepsilon = 0` (ASE's sign convention).
    """
    data = data.clone()
    pos, cell = data.pos.detach().requires_grad_(True), data.cell.detach().reshape(-1, 3, 3)
    batch = getattr(data, "batch", None)
    batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device) if batch is None else batch
    eps = torch.zeros_like(cell).requires_grad_(True)
    deform = torch.eye(3, dtype=pos.dtype, device=pos.device) + 0.5 * (eps + eps.transpose(1, 2))
    data.pos = torch.einsum("ni,nij->nj", pos, deform[batch])
    data.cell = cell @ deform
    energy = model(data)
    grad_pos, grad_eps = torch.autograd.grad(energy.sum(), (pos, eps), create_graph=create_graph)
    volume = torch.linalg.det(cell).abs()
    return energy, -grad_pos, grad_eps / volume[:, None, None]
