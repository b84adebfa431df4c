r"""A small, intrinsically equivariant e3nn model for dipoles and polarizabilities.

A baseline for the ECSE-wrapped PET: its equivariance holds by construction (spherical
harmonics, Clebsch-Gordan tensor products, gated nonlinearities), not by frame averaging.
Per interaction layer and atom :math:`i` with neighbours :math:`j` (:math:`r_{ij} < r_c`):

.. math::

    m_i = \frac{1}{\sqrt{\bar n}} \sum_j u(r_{ij})\;
          h_j \otimes_{W(r_{ij})} Y(\hat{\mathbf r}_{ij}),
    \qquad
    h_i \leftarrow \mathrm{Gate}\big(\mathrm{Lin}(m_i) + \mathrm{Lin}(h_i)\big),

with :math:`Y` the spherical harmonics up to ``lmax`` (default 2), :math:`W` tensor
product weights from an MLP on a Gaussian radial basis, :math:`u` a smooth polynomial
envelope vanishing at :math:`r_c` and :math:`\bar n` a fixed typical neighbour count.
The first features are a species embedding (scalars); the readout is a linear map to the
output irreps per atom, summed per structure (or per atom with ``level="node"``).

Outputs: ``"vector"`` (``1x1o``, ``[B, 3]``), ``"rank2-symmetric"`` (``1x0e+1x2e``
converted to a Cartesian ``[B, 3, 3]`` with e3nn's ``CartesianTensor("ij=ji")``, plus
per-species isotropic offsets :math:`b_z I` like :class:`ecse.backbones.PET`) or any e3nn
Irreps string (``[B, irreps.dim]``, e3nn's layout). :func:`symmetric_to_irreps` and
:func:`irreps_to_symmetric` convert between a symmetric Cartesian tensor and its
``(l=0, l=2)`` parts (``l=0`` is :math:`\mathrm{tr}(T)/\sqrt 3`).
"""
from __future__ import annotations

from typing import Mapping, Optional, Union

import torch
from e3nn import nn as enn
from e3nn import o3
from torch import Tensor, nn
from torch_geometric.data import Batch

from ecse._validation import check_input_dtype
from ecse.covariant import OutputSpec, irreps_to_symmetric, symmetric_to_irreps
from ecse.elements import MAX_Z, atomic_numbers
from ecse.neighbors import neighbor_list

from ._init import reinitialise

__all__ = ["E3nnTensor", "symmetric_to_irreps", "irreps_to_symmetric"]


def _envelope(r: Tensor, cutoff: float, p: int = 6) -> Tensor:
    """Smooth polynomial envelope (DimeNet): 1 at 0, 0 with 2 vanishing derivatives at ``cutoff``."""
    x = (r / cutoff).clamp(max=1.0)
    u = 1 - (p + 1) * (p + 2) / 2 * x ** p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    return u * (r < cutoff)


def _restore_exact(module: "E3nnTensor", incompatible_keys) -> None:
    """After ``load_state_dict``: put the exact Clebsch-Gordan coefficients back."""
    module._apply(lambda t: t)


class _Interaction(nn.Module):
    """One equivariant message-passing layer (tensor product messages + gate + skip)."""

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_hidden: o3.Irreps, num_radial: int,
                 radial_hidden: int, avg_neighbors: float):
        super().__init__()
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l > 0])
        gates = o3.Irreps([(m, "0e") for m, _ in gated])
        self.gate = enn.Gate(scalars, [torch.nn.functional.silu] * len(scalars), gates,
                             [torch.sigmoid] * len(gates), gated)
        wanted = {ir for _, ir in self.gate.irreps_in}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        mid = o3.Irreps(mid)
        self.irreps_mid, perm, _ = mid.sort()
        instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, self.irreps_mid, instructions, shared_weights=False,
                                   internal_weights=False)
        self.radial = enn.FullyConnectedNet([num_radial, radial_hidden, self.tp.weight_numel],
                                            torch.nn.functional.silu)
        self.linear = o3.Linear(self.irreps_mid.simplify(), self.gate.irreps_in)
        self.skip = o3.Linear(irreps_in, self.gate.irreps_in)
        self.norm = avg_neighbors ** -0.5
        self.irreps_out = self.gate.irreps_out

    def forward(self, h: Tensor, center: Tensor, neighbor: Tensor, sh: Tensor, rbf: Tensor, env: Tensor) -> Tensor:
        msg = self.tp(h[neighbor], sh, self.radial(rbf)) * env[:, None]
        agg = msg.new_zeros(h.shape[0], msg.shape[1]).index_add(0, center, msg) * self.norm
        return self.gate(self.linear(agg) + self.skip(h))


class E3nnTensor(nn.Module):
    r"""Intrinsically equivariant e3nn model of per-structure (or per-atom) tensors.

    Args:
        output: ``"vector"``, ``"rank2-symmetric"`` or an e3nn Irreps string (see the
            module docstring).
        cutoff: neighbour cutoff in Å (5.0).
        hidden: hidden irreps (``"32x0e+16x1o+8x2e"``).
        num_layers: interaction layers (2).
        lmax: degree of the edge spherical harmonics (2).
        num_radial: Gaussian radial basis functions (8).
        radial_hidden: hidden width of the radial MLP (32).
        avg_neighbors: typical neighbour count that normalises the message sum (8.0).
        level: ``"graph"`` (sum per structure) or ``"node"``.
        dtype: dtype of the parameters (default: torch's default dtype).  The modules are
            built in float64 and a float64 copy of e3nn's Clebsch-Gordan coefficients is
            kept, so ``.double()`` of a float32 model is exact again (errors ~1e-15, not
            the ~1e-9 of float32-rounded coefficients).

    Shapes:
        input: ``data.pos`` ``[N, 3]``, ``data.z`` ``[N]``, optional ``batch``, ``cell``
        ``[B, 3, 3]``, ``pbc`` ``[B, 3]``.
        output: ``[B, 3]``, ``[B, 3, 3]`` or ``[B, irreps.dim]`` (``[N, ...]`` per atom).

    Exactly O(3) equivariant for every input (polar vectors: ``1o``; polarizability:
    ``0e+2e``), in any dtype up to rounding.

    Example:
        >>> from ase.build import molecule
        >>> from ecse.atomistic import atoms_to_data
        >>> model = E3nnTensor("vector", hidden="8x0e+4x1o+2x2e", num_layers=1, dtype=torch.float64)
        >>> tuple(model(atoms_to_data(molecule("H2O"), dtype=torch.float64)).shape)
        (1, 3)
    """

    def __init__(self, output: str = "vector", cutoff: float = 5.0, hidden: str = "32x0e+16x1o+8x2e",
                 num_layers: int = 2, lmax: int = 2, num_radial: int = 8, radial_hidden: int = 32,
                 avg_neighbors: float = 8.0, level: str = "graph", dtype: Optional[torch.dtype] = None):
        super().__init__()
        self._config = dict(output=output, cutoff=cutoff, hidden=hidden, num_layers=num_layers, lmax=lmax,
                             num_radial=num_radial, radial_hidden=radial_hidden, avg_neighbors=avg_neighbors,
                             level=level)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            self._build(output, cutoff, hidden, num_layers, lmax, num_radial, radial_hidden, avg_neighbors, level)
        finally:
            torch.set_default_dtype(old)
        # float64 masters of the constant buffers (Clebsch-Gordan), restored by _apply
        self._exact = {n: b.detach().clone() for n, b in self.named_buffers() if "_w3j" in n}
        self.register_load_state_dict_post_hook(_restore_exact)
        self.to(dtype)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for name, exact in getattr(self, "_exact", {}).items():
            owner, _, leaf = name.rpartition(".")
            module = self.get_submodule(owner)
            current = module._buffers[leaf]
            module._buffers[leaf] = fn(exact).to(dtype=current.dtype, copy=True)
            self._exact[name] = exact.to(device=current.device)
        return self

    def __repr__(self) -> str:
        h = self._config
        return (f"{type(self).__name__}(output={self.output!r}, irreps_out={str(self.irreps_out)!r}, "
                f"hidden={h['hidden']!r}, num_layers={h['num_layers']}, lmax={h['lmax']}, cutoff={self.cutoff}, "
                f"level={self.level!r})")

    def reset_parameters(self) -> None:
        """Reinitialise every parameter as the constructor does (under the same seed,
        exactly as a new ``E3nnTensor``; composition offsets back to 0)."""
        reinitialise(self, {**self._config, "dtype": self.embedding.weight.dtype})

    def _build(self, output, cutoff, hidden, num_layers, lmax, num_radial, radial_hidden, avg_neighbors,
               level) -> None:
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        if num_layers < 1 or lmax < 1 or cutoff <= 0:
            raise ValueError(f"need num_layers >= 1, lmax >= 1 and cutoff > 0, got {num_layers}, {lmax}, {cutoff}")
        try:
            self.spec = OutputSpec(output)
            if not (self.spec.is_irreps or self.spec.is_vector or self.spec.is_symmetric):
                raise ValueError(output)
        except ValueError as err:
            raise ValueError(f"unknown output {output!r}: use 'vector', 'rank2-symmetric' or an e3nn Irreps "
                             "string such as '1x1o' or '1x0e+1x2e'") from err
        self.irreps_out = self.spec.as_irreps
        self.output, self.level, self.cutoff = output, level, float(cutoff)
        hidden_irreps = o3.Irreps(hidden).simplify()
        if not any(ir.l == 0 for _, ir in hidden_irreps):
            raise ValueError(f"hidden irreps {hidden!r} need scalars (0e)")
        mul0 = sum(m for m, ir in hidden_irreps if ir.l == 0)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.embedding = nn.Embedding(MAX_Z + 1, mul0)
        layers, irreps = [], o3.Irreps(f"{mul0}x0e")
        for _ in range(num_layers):
            layers.append(_Interaction(irreps, self.irreps_sh, hidden_irreps, num_radial, radial_hidden,
                                       avg_neighbors))
            irreps = layers[-1].irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = o3.Linear(irreps, self.irreps_out)
        missing = [str(ir) for _, ir in self.irreps_out if ir not in {i for _, i in irreps}]
        if missing:
            raise ValueError(f"the hidden irreps {str(irreps)!r} cannot produce output irreps {missing}; "
                             "add them to 'hidden'")
        self.register_buffer("centers", torch.linspace(0.0, cutoff, num_radial))
        self.register_buffer("composition_offsets", torch.zeros(MAX_Z + 1))

    def set_composition_offsets(self, offsets: Union[Mapping[int, float], Tensor]) -> None:
        """Per-species isotropic offsets ``b_z`` (added as ``b_z I`` to ``rank2-symmetric``
        outputs, and to the ``0e`` block as ``sqrt(3) b_z`` for ``output="1x0e+1x2e"``),
        from ``{atomic number: value}`` or a tensor ``[119]``."""
        if isinstance(offsets, Tensor):
            self.composition_offsets.copy_(offsets)
            return
        for z, value in offsets.items():
            self.composition_offsets[int(z)] = float(value)

    def forward(self, data) -> Tensor:
        pos, z = data.pos, atomic_numbers(data, "E3nnTensor")
        check_input_dtype(self, pos, "data.pos")
        batch = getattr(data, "batch", None)
        batch = torch.zeros_like(z) if batch is None else batch
        nl = neighbor_list(pos, self.cutoff, batch, getattr(data, "cell", None), getattr(data, "pbc", None))
        r = nl.vector.norm(dim=-1)
        sh = o3.spherical_harmonics(self.irreps_sh, nl.vector, normalize=True, normalization="component")
        width = self.cutoff / len(self.centers)
        rbf = torch.exp(-((r[:, None] - self.centers) / width) ** 2)
        env = _envelope(r, self.cutoff)
        h = self.embedding(z)
        for layer in self.layers:
            h = layer(h, nl.center, nl.neighbor, sh, rbf, env)
        y = self.readout(h)
        if self.spec.is_symmetric or self.spec.is_spherical_rank2:  # b_z I: sqrt(3) b_z on l=0
            iso = self.composition_offsets.to(y.dtype)[z]
            y = torch.cat([y[:, :1] + 3 ** 0.5 * iso[:, None], y[:, 1:]], dim=1)
        if self.level == "graph":
            num_graphs = data.num_graphs if isinstance(data, Batch) else int(batch.max()) + 1 if z.numel() else 1
            y = y.new_zeros(num_graphs, y.shape[1]).index_add(0, batch, y)
        if self.spec.is_symmetric:
            return irreps_to_symmetric(y)
        return y
