"""Smoothness of ECSE(PET): curvature along paths, NVE energy conservation, pruning sweep (printed, never asserted).

    python benchmarks/smoothness.py [--systems methane water cu300 cu1000] [--quick] [--points 200]
                                    [--span 0.2] [--nve-ps 2.0] [--budget 120] [--nve-budget 150]
                                    [--sweep-budget 45] [--sweep-nve-ps 1.0] [--cu-size 1]
                                    [--checkpoints DIR] [--frame-average layers|tokens] [--trajectories DIR]
                                    [--out rows.json]

Every model is bare ``PET`` (small sizes, float64) and ``ECSE(pet, cutoff=5.0)`` (global) and
``ECSE(pet, cutoff=5.0, mode="local")`` around the *same* weights, with ``ECSE``'s own
defaults (no frame setting is passed, so a rerun picks up changed defaults); only the
pruning sweep passes ``pruning_threshold`` / ``num_prunings`` explicitly.

Systems (the probe structure of each; global mode pools the frames of every atom, so its
cost grows with the cell, and small cells keep it affordable):

* ``methane``: the first structure of the bundled ``methane`` test set (5 atoms);
* ``water``: a 24-atom periodic cell (8 molecules, 6.22 A cube, the density of the 192-atom
  box) cut from ``../shared/data/water_bulk_64``: the octant of one frame whose 8 whole
  molecules (hydrogens joined to their oxygen) keep the largest intermolecular O-O and
  O-H distances across the new periodic boundary (both printed);
* ``cu300`` / ``cu1000``: EMT thermal fcc Cu cells at 300 / 1000 K from
  ``ecse.atomistic.emt.emt_structures`` (``--cu-size 1``: the 4-atom cubic cell, the default,
  so that global mode is affordable; ``--cu-size 2``: 32 atoms);
* ``water192`` (not in the default list): the whole 192-atom box (bare and local; global
  only within the budget).

Measurements:

1. **Curvature ratio**: along one random straight path (``--span`` A, the Frobenius norm
   of the displacement of all atoms, sampled at ``--points`` points; direction seeded)
   ``max |d2E/ds2|`` of each ECSE mode over bare PET's on the same path
   (``ecse.testing.smoothness_profile``), for (a) the trained PET and (b) the
   *near-invariant model*: a Morse pair potential (minimum at the nearest-neighbour
   distance of each pair of species in the probe structure) plus the trained PET scaled to
   carry 10 % of the RMS force.  A profile estimated (points x seconds per call) above
   ``--budget`` s is run on a coarser grid that fits (at least 21 points, bare re-run on the
   same grid; printed with its point count) or skipped with the reason printed.  Also the
   ratio to the largest curvature of bare PET along the same path rigidly rotated into
   ``--orientations`` random orientations besides the given one
   (``ecse.testing.orientation_curvatures``): ECSE is exactly invariant, so its curvature
   is the same in every orientation, while a trained PET's depends on the orientation,
   and the issue's ratio compares with the one orientation that the data happen to have.
2. **NVE**: velocity Verlet (``ecse.atomistic.md.run_nve``, ``--timestep`` 0.5 fs,
   ``--nve-ps`` ps, initial velocities at the system's temperature, float64) of bare,
   global and local around the trained PET: drift (eV/atom/ps, linear fit of the total
   energy, with its standard error from 0.1 ps block means) and the largest excursion
   ``max |E_tot - E_tot(0)|`` per atom, and their ratios to bare's. A trajectory estimated above
   ``--nve-budget`` s is shortened to fit (its length printed) and skipped below 0.1 ps.
   Methane and water get harmonic springs on their intramolecular pairs at the starting
   lengths (methane ``k = 5 eV/A^2``; water ``WATER_SPRINGS``: O-H 46, H-H 20 eV/A^2, about
   real water's stiffness), added to every model alike (bare, global, local): invariant,
   they keep a briefly trained PET's molecules from flying apart (without them the bare
   methane run heats to thousands of K) and water's bends within the spread of its training
   data, and do not change what ECSE adds to the PET term. Water also gets repulsive walls
   on intermolecular pairs closer than 2.35 A (O-O), 1.4 A (O-H) or 1.5 A (H-H)
   (``WATER_WALLS``): without them the briefly trained PET lets molecules pass through each
   other within 0.5 ps (intermolecular O-O 0.8 A, H-H 0.3 A), so the NVE runs would compare
   ECSE and bare PET on unphysical geometry. Cu gets one wall on every pair of atoms at
   2.2 A (``CU_WALL``, ``100 eV/A^3``, summed over periodic images): the briefly trained PET is
   not repulsive below about 2.1 A, and without the wall the 4-atom cell collapses under
   ECSE's average (a Cu-Cu distance of 0.5 A and thousands of K within 1.2 ps).
3. **NVE with frame settings** (``--nve-settings``, instead of 1, 2 and 4): bare PET and
   ``ECSE`` with each given setting (``ECSE`` keyword arguments) in ``--nve-modes``.
4. **Frame-settings sweep** (``--sweep-systems``): frames per centre (local: frame copies
   per atom; global: retained frames per structure) against the curvature ratio of the
   trained PET, both modes, for ``SWEEP``: the defaults, the published pruning and other
   pruning settings with the published 0.15 Å / 0.15 switches, and no pruning with those,
   with 0.5 Å / 0.2 switches and with ecse's (0.5 Å, angular sin² 0.12-0.24); on methane
   also NVE drift and excursion (``--sweep-nve-ps``); profiles within ``--sweep-budget`` s
   (coarser grid or skipped above it).

Trained PETs: ``PET(**SMALL)`` (``benchmarks/scaling.py``; water's with ``num_radial=32``,
``PET_CONFIG``) fitted to energies and forces (Adam, ``--train-seconds`` s of wall time on
one thread, seeded; every structure randomly rotated in every batch, the published recipe
and the training stack's default) on the bundled methane training set, the 192-atom water
frames (frames 0-299) and EMT Cu cells generated at 300 and 1000 K and liquid Cu at 2000 K
(one model for every temperature; the liquid's shorter contacts, down to about 2.1 A, teach
it the repulsion that a model fitted to the solid alone lacks); saved as ``{system}.pt``
under ``--checkpoints`` and loaded from there on a rerun (``--retrain`` to refit).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecse.frameset import PUBLISHED

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scaling import SMALL  # noqa: E402

CUTOFF = 5.0
SYSTEMS = ["methane", "water", "cu300", "cu1000"]
ALL_SYSTEMS = SYSTEMS + ["water192"]
TEMPERATURE = {"methane": 300.0, "water": 300.0, "water192": 300.0, "cu300": 300.0, "cu1000": 1000.0}
MODEL_OF = {"methane": "methane", "water": "water", "water192": "water", "cu300": "cu", "cu1000": "cu"}
SWEEP = [  # (label, ECSE keyword arguments); explicit, so that a change of the defaults changes no row but the first
    ("defaults", {}),
    ("published: 0.9, 4 rounds, rw 0.15", dict(PUBLISHED)),
    ("0.9, 1 round, rw 0.15", {**PUBLISHED, "pruning_threshold": 0.9, "num_prunings": 1}),
    ("0.5, 4 rounds, rw 0.15", {**PUBLISHED, "pruning_threshold": 0.5}),
    ("no pruning, rw 0.15", {**PUBLISHED, "num_prunings": 0}),
    ("no pruning, rw 0.5, aw 0.2", {"num_prunings": 0, "radial_width": 0.5, "angle_threshold": 0.2,
                                    "angle_width": 0.2, "cutoff_angle_start": 0.2}),
    ("no pruning, rw 0.5, at 0.12, aw 0.12", {"num_prunings": 0, "radial_width": 0.5, "angle_threshold": 0.12,
                                             "angle_width": 0.12, "cutoff_angle_start": 0.12}),
    ("no pruning, rw 0.5, at 0.12, aw 0.12, cs 0.03", {"num_prunings": 0, "radial_width": 0.5,
                                                      "angle_threshold": 0.12, "angle_width": 0.12,
                                                      "cutoff_angle_start": 0.03}),
]
MODES = ("global", "local")


# ---- structures -------------------------------------------------------------------------------

def water_frames(data_dir: Path):
    from ase.io import read

    return read(data_dir / "water_bulk_64" / "water_deepmd_400.xyz", index=":")


def _octant(atoms, k: int):
    """The whole molecules whose oxygen lies in octant ``k`` of a cubic box, in a cube half as wide."""
    from ase import Atoms

    length = float(atoms.cell.lengths()[0])
    half = length / 2
    pos, sym = atoms.positions, np.array(atoms.get_chemical_symbols())
    oxygens, hydrogens = np.flatnonzero(sym == "O"), np.flatnonzero(sym == "H")
    shift = np.array([(k >> b) & 1 for b in range(3)]) * half
    new_pos, new_sym = [], []
    for o in oxygens:
        po = (pos[o] - shift) % length
        if not (po < half).all():
            continue
        d = pos[hydrogens] - pos[o]
        d -= length * np.round(d / length)
        new_pos.append(po)
        new_sym.append("O")
        for h in np.argsort(np.linalg.norm(d, axis=1))[:2]:
            new_pos.append(po + d[h])
            new_sym.append("H")
    return Atoms(new_sym, positions=new_pos, cell=[half] * 3, pbc=True)


def _closest_contacts(atoms) -> tuple[float, float]:
    """Smallest intermolecular O-O and O-H distances (molecules = consecutive O, H, H)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, 3.5)
    mol, sym = np.arange(len(atoms)) // 3, np.array(atoms.get_chemical_symbols())
    inter = mol[i] != mol[j]
    oo, oh = inter & (sym[i] == "O") & (sym[j] == "O"), inter & (sym[i] != sym[j])
    return (float(d[oo].min()) if oo.any() else math.inf), (float(d[oh].min()) if oh.any() else math.inf)


def small_water_cell(data_dir: Path, molecules: int = 8):
    """24-atom periodic water cell cut from the 192-atom box (see the module docstring)."""
    best = None
    for f, atoms in enumerate(water_frames(data_dir)):
        for k in range(8):
            cell = _octant(atoms, k)
            if len(cell) != 3 * molecules:
                continue
            oo, oh = _closest_contacts(cell)
            score = min(oo - 2.5, oh - 1.6)
            if best is None or score > best[0]:
                best = (score, cell, f"water_bulk_64 frame {f}, octant {k}: {len(cell)} atoms in a "
                                     f"{cell.cell.lengths()[0]:.2f} A cube, closest intermolecular O-O {oo:.2f} A, "
                                     f"O-H {oh:.2f} A")
    return best[1], best[2]


def probe_structure(name: str, args):
    """``(ase.Atoms, description)`` of a system's probe structure."""
    from ase.io import read

    from ecse.atomistic.datasets import bundled_dataset
    from ecse.atomistic.emt import emt_structures

    if name == "methane":
        return read(bundled_dataset("methane")["test"], index=0), "bundled methane_test[0], 5 atoms"
    if name == "water":
        return small_water_cell(args.data)
    if name == "water192":
        return water_frames(args.data)[399], "water_bulk_64 frame 399 (not trained on), 192 atoms"
    temperature = TEMPERATURE[name]
    (atoms,) = emt_structures("thermal", "Cu", temperature=temperature, n=1, size=args.cu_size, seed=101)
    return atoms, f"EMT thermal fcc Cu at {temperature:.0f} K, {len(atoms)} atoms (emt_structures seed 101)"


def training_frames(model_name: str, args) -> list:
    from ase.io import read

    from ecse.atomistic.datasets import bundled_dataset
    from ecse.atomistic.emt import emt_structures

    if model_name == "methane":
        return read(bundled_dataset("methane")["train"], index=":")
    if model_name == "water":
        return water_frames(args.data)[:300]
    thermal = [a for t, seed in ((300.0, 1), (1000.0, 2))
               for a in emt_structures("thermal", "Cu", temperature=t, n=24, size=args.cu_size, seed=seed)]
    return thermal + emt_structures("liquid", "Cu", n=24, size=args.cu_size, seed=3)


#: what each PET is fitted to; a checkpoint fitted to other data is refitted
TRAINING_DATA = {"methane": "bundled methane train", "water": "water_bulk_64 frames 0-299",
                 "cu": "EMT Cu: thermal 300 K and 1000 K, liquid 2000 K, 24 cells each"}


def to_data(atoms, dtype=torch.float64):
    from ecse.atomistic import atoms_to_data

    return atoms_to_data(atoms, dtype=dtype)


# ---- models -----------------------------------------------------------------------------------

#: the small PET of each system: ``SMALL``, and for water with ``num_radial=32`` (a Gaussian
#: basis of the distance in the edge embedding): with the published linear embedding PET
#: does not learn water's forces ("Why PET needed two changes on water" in RESULTS.md; the
#: water PET of this benchmark sat at the zero-force level, force MAE 602 meV/A, until 2026-12-06)
PET_CONFIG = {"methane": SMALL, "water": {**SMALL, "num_radial": 32}, "cu": SMALL}


def make_pet(seed: int, frame_average: str = "layers", system: str = "methane"):
    """``PET(**PET_CONFIG[system])`` in float64, seeded."""
    from ecse.backbones import PET

    torch.manual_seed(seed)
    return PET(cutoff=CUTOFF, frame_average=frame_average, **PET_CONFIG[system]).double()


def rotate_batch(batch, gen: torch.Generator):
    """Rotate every structure of ``batch`` (positions, forces, cell) by its own random rotation,
    as the training stack's ``augment_rotations`` does (row vectors: ``x @ R.T``)."""
    from ecse.rotations import random_rotations

    rot = random_rotations(batch.num_graphs, gen, dtype=batch.pos.dtype)
    per_node = rot[batch.batch]
    batch.pos = torch.einsum("ni,nji->nj", batch.pos, per_node)
    batch.forces = torch.einsum("ni,nji->nj", batch.forces, per_node)
    if getattr(batch, "cell", None) is not None:
        batch.cell = batch.cell @ rot.transpose(1, 2)
    return batch


def train_pet(frames: list, seconds: float, seed: int, batch_size: int = 8, lr: float = 2e-3, log=print,
              augment: bool = True, in_loop=None, frame_average: str = "layers", system: str = "methane"):
    """A small PET fitted to energies and forces for ``seconds`` of wall time (Adam, MSE of
    energy per atom + MSE of force components, every structure randomly rotated in every
    batch unless ``augment=False``: the published recipe, and the training stack's default);
    returns ``(pet, info)``.  ``in_loop``: a function of the PET that returns the model to
    train through (``lambda pet: ECSE(pet, 5.0, mode="local")``: the ensemble in the loop;
    ``None``: bare PET); ``frame_average``: the PET's (how local mode uses the frames)."""
    from torch_geometric.data import Batch

    from ecse.atomistic.derivatives import energy_and_forces

    pet = make_pet(seed, frame_average, system)
    data = []
    for a in frames:
        d = to_data(a)
        d.energy = torch.tensor([a.get_potential_energy()], dtype=torch.float64)
        d.forces = torch.as_tensor(a.get_forces(), dtype=torch.float64)
        data.append(d)
    # composition offsets by least squares, output scale = force std
    species = sorted({int(z) for d in data for z in d.z})
    counts = torch.tensor([[float((d.z == s).sum()) for s in species] for d in data], dtype=torch.float64)
    energies = torch.cat([d.energy for d in data])
    offsets = torch.linalg.lstsq(counts, energies[:, None]).solution[:, 0]
    pet.set_composition_offsets({s: float(o) for s, o in zip(species, offsets)})
    pet.set_output_scale(float(torch.cat([d.forces for d in data]).std()))
    model = pet if in_loop is None else in_loop(pet)
    opt = torch.optim.Adam(pet.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    batch_size = max(1, min(batch_size, 200 // data[0].num_nodes))
    start, step, losses = time.perf_counter(), 0, []
    model.train()
    while time.perf_counter() - start < seconds:
        idx = torch.randint(len(data), (batch_size,), generator=gen).tolist()
        batch = Batch.from_data_list([data[i] for i in idx])
        if augment:
            batch = rotate_batch(batch, gen)
        energy, forces = energy_and_forces(model, batch, create_graph=True)
        n = torch.bincount(batch.batch).double()
        loss = ((energy - batch.energy) / n).pow(2).mean() + (forces - batch.forces).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
    model.eval()
    info = {"steps": step, "seconds": time.perf_counter() - start, "seed": seed, "frames": len(data), "augmented": augment,
            "loss_first": losses[0], "loss_last10": float(np.mean(losses[-10:]))}
    log(f"  trained: {step} steps in {info['seconds']:.0f} s, loss {info['loss_first']:.3g} -> "
        f"{info['loss_last10']:.3g} (mean of the last 10)")
    return pet, info


def trained_pet(model_name: str, args, in_loop=None, suffix: str = ""):
    """Load ``{checkpoints}/{model_name}{suffix}.pt`` or train (and save) it; ``in_loop``:
    train through this wrapper of the PET (:func:`train_pet`), with ``args.frame_average``."""
    if model_name == "cu":
        model_name = f"cu{args.cu_size}"
    system = model_name.rstrip("0123456789")
    path = args.checkpoints / f"{model_name}{suffix}.pt"
    if path.exists() and not args.retrain:
        saved = torch.load(path, weights_only=False)
        data = TRAINING_DATA[system]
        # untagged checkpoints predate the tag: methane's and water's data are unchanged since, Cu's not
        tag = saved["info"].get("data", None if system == "cu" else data)
        if (saved["config"] == PET_CONFIG[system] and saved["info"]["seconds"] >= 0.9 * args.train_seconds
                and saved["info"].get("augmented", False) and tag == data):
            pet = make_pet(0, args.frame_average, system)
            pet.load_state_dict(saved["state_dict"])
            print(f"  {model_name} PET loaded from {path} ({saved['info']['steps']} training steps)")
            return _chunked(pet.eval(), args), saved["info"]
    print(f"  training the {model_name} PET{' in the loop' if in_loop is not None else ''} for "
          f"{args.train_seconds:.0f} s (seed {args.seed})", flush=True)
    pet, info = train_pet(training_frames(system, args), args.train_seconds, args.seed, in_loop=in_loop,
                          frame_average=args.frame_average if in_loop is not None else "layers", system=system)
    info["data"] = TRAINING_DATA[system]
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": pet.state_dict(), "config": PET_CONFIG[system], "info": info}, path)
    local = make_pet(0, args.frame_average, system)  # how local mode uses the frames (training is bare)
    local.load_state_dict(pet.state_dict())
    return _chunked(local.eval(), args), info


def _chunked(pet, args):
    """``pet`` with ``--chunk-tokens`` (if given): the same numbers up to rounding, another
    speed and memory."""
    chunk_tokens = getattr(args, "chunk_tokens", None)
    if chunk_tokens is not None:
        pet.chunk_tokens = None if chunk_tokens == 0 else chunk_tokens
    return pet


class Morse(nn.Module):
    """Pair potential ``sum_{i<j} D [(1 - exp(-a (r - r0_ij)))^2 - 1] f_c(r)`` with ``r0`` per
    pair of species (a smooth cutoff ``f_c`` over the last 0.5 A before ``cutoff``)."""

    def __init__(self, r0: torch.Tensor, depth: float = 0.3, a: float = 1.8, cutoff: float = CUTOFF):
        super().__init__()
        self.register_buffer("r0", r0)
        self.depth, self.a, self.cutoff = depth, a, cutoff

    def forward(self, data) -> torch.Tensor:
        from ecse.neighbors import neighbor_list

        batch = getattr(data, "batch", None)
        batch = torch.zeros_like(data.z) if batch is None else batch
        nl = neighbor_list(data.pos, self.cutoff, batch, getattr(data, "cell", None), getattr(data, "pbc", None))
        r = nl.vector.norm(dim=-1)
        x = ((self.cutoff - r) / 0.5).clamp(0, 1)
        fc = x * x * x * (10 - 15 * x + 6 * x * x)  # C2 smoothstep
        pair = self.depth * ((1 - torch.exp(-self.a * (r - self.r0[data.z[nl.center], data.z[nl.neighbor]]))) ** 2 - 1)
        num_graphs = int(batch.max()) + 1 if batch.numel() else 1
        return 0.5 * torch.zeros(num_graphs, dtype=r.dtype).index_add_(0, batch[nl.center], pair * fc)


def nearest_neighbour_table(atoms) -> torch.Tensor:
    """``[119, 119]`` smallest distance of each pair of species in ``atoms`` (2.5 A if absent)."""
    from ase.neighborlist import neighbor_list

    table = torch.full((119, 119), 2.5, dtype=torch.float64)
    i, j, d = neighbor_list("ijd", atoms, CUTOFF)
    z = atoms.numbers
    for a, b in {(int(z[p]), int(z[q])) for p, q in zip(i, j)}:
        table[a, b] = table[b, a] = float(d[(z[i] == a) & (z[j] == b)].min())
    return table


class NearInvariant(nn.Module):
    """Morse pair potential plus ``scale`` times a PET (the near-invariant model of issue 15)."""

    supports_local_frames = True

    def __init__(self, morse: Morse, pet, scale: float):
        super().__init__()
        self.morse, self.pet, self.scale = morse, pet, float(scale)
        self.spec = pet.spec

    def forward(self, data, local_frames=None):
        out = self.pet(data) if local_frames is None else self.pet(data, local_frames=local_frames)
        return self.morse(data) + self.scale * out


def near_invariant(pet, atoms, share: float = 0.1):
    """The near-invariant model around ``pet`` with the PET term at ``share`` of the RMS force
    of the Morse term on ``atoms``."""
    from ecse.atomistic.derivatives import energy_and_forces

    morse = Morse(nearest_neighbour_table(atoms))
    data = to_data(atoms)
    f_morse = energy_and_forces(morse, data)[1]
    f_pet = energy_and_forces(pet, data)[1]
    scale = share * float(f_morse.pow(2).mean().sqrt() / f_pet.pow(2).mean().sqrt())
    return NearInvariant(morse, pet, scale).eval()


class Restrained(nn.Module):
    """``model(data)`` plus, optionally, harmonic springs ``k/2 (r - r0)^2`` (``k`` one number or
    one per pair) on the intramolecular pairs of a molecular system (minimum-image lengths)
    and repulsive walls ``k_w (r_w - r)^3`` (zero beyond ``r_w``, twice differentiable) summed
    over every periodic image of each wall pair closer than its ``r_w``; invariant, so they exert no net force or
    torque and leave the comparison of bare and wrapped PET unchanged."""

    def __init__(self, model, pairs: torch.Tensor | None, r0: torch.Tensor | None,
                 wall_pairs: torch.Tensor | None = None, wall_r0: torch.Tensor | None = None,
                 k: float | torch.Tensor = 5.0, wall_k: float = 20.0):
        super().__init__()
        self.model, self.k, self.wall_k = model, k, wall_k
        self.register_buffer("pairs", pairs)
        self.register_buffer("r0", r0)
        self.register_buffer("wall_pairs", wall_pairs)
        self.register_buffer("wall_r0", wall_r0)
        self.spec = getattr(model, "spec", None)

    @staticmethod
    def _cell(data):
        cell = getattr(data, "cell", None)
        if cell is None or not bool(cell.reshape(3, 3).abs().sum() > 0):
            return None
        return cell.reshape(3, 3).to(data.pos.dtype)

    @staticmethod
    def _minimum_image(pos, pairs, cell):
        """Minimum-image displacements ``[P, 3]`` of ``pairs``."""
        d = pos[pairs[1]] - pos[pairs[0]]
        return d if cell is None else d - torch.round(d @ torch.linalg.inv(cell)) @ cell

    @staticmethod
    def _lengths(pos, pairs, cell):
        """Minimum-image lengths ``[P]`` of ``pairs``."""
        return Restrained._minimum_image(pos, pairs, cell).norm(dim=-1)

    @staticmethod
    def _image_lengths(pos, pairs, cell):
        """Lengths ``[P, 27]`` of the minimum image of each pair and its 26 neighbouring images
        (every image closer than the cell's smallest width; ``[P, 1]`` without a cell)."""
        d = Restrained._minimum_image(pos, pairs, cell)
        if cell is None:
            return d.norm(dim=-1, keepdim=True)
        steps = torch.tensor([-1.0, 0.0, 1.0], dtype=pos.dtype)
        shifts = torch.cartesian_prod(steps, steps, steps) @ cell
        return (d[:, None, :] + shifts[None]).norm(dim=-1)

    def forward(self, data):
        cell = self._cell(data)
        energy = self.model(data)
        if self.pairs is not None:
            r = self._lengths(data.pos, self.pairs, cell)
            energy = energy + (0.5 * self.k * (r - self.r0).pow(2)).sum().reshape(1)
        if self.wall_pairs is not None:
            r = self._image_lengths(data.pos, self.wall_pairs, cell)
            overlap = (self.wall_r0[:, None] - r).clamp(min=0.0)
            energy = energy + self.wall_k * overlap.pow(3).sum().reshape(1)
        return energy


#: closest intermolecular approach (A) before water's repulsive walls act, per pair of
#: species: below the closest contacts of liquid water at 300 K (O-O about 2.5 A, the
#: hydrogen bond O...H about 1.6 A)
WATER_WALLS = {("O", "O"): 2.35, ("H", "O"): 1.4, ("O", "H"): 1.4, ("H", "H"): 1.5}

#: spring constants of water's intramolecular pairs (eV/A^2), by "is it the H-H pair": the O-H
#: bonds at SPC/Fw's stiffness (46 eV/A^2, Wu, Tepper and Voth 2006) and the H-H pair at
#: 20 eV/A^2, about twice SPC/Fw's bending stiffness (3.3 eV/rad^2, or 9 eV/A^2 on the H-H
#: distance). With the briefly trained water PET under 5 eV/A^2 springs the molecules bent
#: to 155 degrees within 1 ps; with these, its H-O-H angles keep the spread of the DFT data
#: it was trained on (about 106 +- 6 degrees, at most 126-131, against 105.7 +- 5.2 and 129)
WATER_SPRINGS = {False: 46.0, True: 20.0}

#: closest Cu-Cu approach (A) before the metal's repulsive wall acts: below the shortest
#: distances of EMT Cu at 1000 K (nearest neighbours at 2.55 A), where the briefly trained PET
#: is not repulsive (its pair force turns attractive below about 2.1 A)
CU_WALL = 2.2
#: stiffness of the Cu wall (eV/A^3): 3 eV/A of repulsion 0.1 A inside it
CU_WALL_K = 100.0


def restraint_pairs(name: str, atoms) -> dict:
    """:class:`Restrained`'s keyword arguments ``pairs [2, P], r0 [P], k, wall_pairs [2, Q],
    wall_r0 [Q], wall_k``: the intramolecular springs of methane (all pairs, ``k`` 5 eV/A^2)
    and water (consecutive O, H, H; ``k`` per pair from :data:`WATER_SPRINGS`); water's
    intermolecular walls (:data:`WATER_WALLS`; none for methane); the metal's walls on
    every pair of atoms (:data:`CU_WALL`, no springs)."""
    n = len(atoms)
    if name.startswith("cu"):
        walls = torch.tensor([(a, b) for a in range(n) for b in range(a + 1, n)]).reshape(-1, 2).T
        return dict(pairs=None, r0=None, wall_pairs=walls, wall_k=CU_WALL_K,
                    wall_r0=torch.full((walls.shape[1],), CU_WALL, dtype=torch.float64))
    groups = [list(range(n))] if name == "methane" else [list(range(i, i + 3)) for i in range(0, n, 3)]
    pairs = torch.tensor([(a, b) for g in groups for i, a in enumerate(g) for b in g[i + 1:]]).T
    data = to_data(atoms)
    r0 = Restrained._lengths(data.pos, pairs, Restrained._cell(data)).detach()
    if name == "methane":
        return dict(pairs=pairs, r0=r0, wall_pairs=None, wall_r0=None)
    symbols, molecule = atoms.get_chemical_symbols(), [i // 3 for i in range(n)]
    k = torch.tensor([WATER_SPRINGS[symbols[a] == symbols[b] == "H"] for a, b in pairs.T.tolist()], dtype=torch.float64)
    inter = [(a, b) for a in range(n) for b in range(a + 1, n) if molecule[a] != molecule[b]]
    wall_r0 = torch.tensor([WATER_WALLS[symbols[a], symbols[b]] for a, b in inter], dtype=torch.float64)
    return dict(pairs=pairs, r0=r0, k=k, wall_pairs=torch.tensor(inter).T, wall_r0=wall_r0, wall_k=20.0)


def wrapped(backbone, mode: str, setting=None):
    """``ECSE(backbone, cutoff=5.0[, mode="local"], **setting)`` (``None``: the defaults)."""
    from ecse import ECSE

    kwargs = {} if mode == "global" else {"mode": "local"}
    return ECSE(backbone, CUTOFF, **kwargs, **(setting or {})).eval()


# ---- measurements -----------------------------------------------------------------------------

def seconds_per_call(model, data) -> float:
    from ecse.atomistic.derivatives import energy_and_forces

    start = time.perf_counter()
    energy_and_forces(model, data)
    return time.perf_counter() - start


def frames_per_centre(model, data) -> float:
    """Local: frame copies with weight > 0 per atom (mean); global: retained frames per structure."""
    from ecse import global_frames, local_frames

    cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
    batch = torch.zeros_like(data.z)
    if model.mode == "local":
        lf = local_frames(data.pos, CUTOFF, batch, cell, pbc, model.params)
        kept = (~lf.invariant) & (lf.weight > 0)
        return float(kept.sum()) / lf.num_atoms
    return float(global_frames(data.pos, CUTOFF, batch, 1, cell, pbc, model.params).graph.numel())


class Profiles:
    """Curvature profiles along one path per structure, bare ones cached per grid."""

    def __init__(self, atoms, args):
        self.data, self.args, self._bare = to_data(atoms), args, {}

    def profile(self, model, points: int):
        from ecse.testing import smoothness_profile

        batch = None if points <= 50 else 10
        return smoothness_profile(model, self.data, span=self.args.span, points=points, seed=self.args.path_seed,
                                  batch_size=batch)

    def ratio(self, label: str, model, bare, log, budget=None) -> dict:
        """Curvature of ``model`` over ``bare``'s on the same path; coarser grid or skip by budget."""
        points, args = self.args.points, self.args
        budget = args.budget if budget is None else budget
        t = seconds_per_call(model, self.data)
        if points * t > budget:
            points = int(budget / t)
            if points < 21:
                log(f"    {label}: skipped, {t:.2f} s per call x 21 points exceeds the budget of {budget:.0f} s")
                return {"skipped": f"{t:.2f} s per call"}
        key = (id(bare), points)
        if key not in self._bare:
            self._bare[key] = self.orientations(bare, points)
        start = time.perf_counter()
        prof = self.profile(model, points)
        worst, bare_worst = abs(prof.worst_curvature), self._bare[key]
        return {"points": points, "curvature": worst, "bare_curvature": bare_worst[0],
                "ratio": worst / bare_worst[0], "bare_orientations": bare_worst,
                "orientation_ratio": worst / max(bare_worst), "worst_s": prof.worst_s, "seconds_per_call": t,
                "seconds": time.perf_counter() - start}

    def orientations(self, model, points: int) -> list[float]:
        """Worst ``|d2E/ds2|`` of ``model`` along the path in its given orientation and in
        ``--orientations`` random ones (the structure and the path rotated together)."""
        from ecse.testing import orientation_curvatures

        batch = None if points <= 50 else 10
        values = orientation_curvatures(model, self.data, span=self.args.span, points=points, seed=self.args.path_seed,
                                        rotations=self.args.orientations, batch_size=batch)
        return values.tolist()


def nve(model, atoms, temperature: float, ps: float, args, log, label: str, restraint=None) -> dict:
    from ecse.atomistic import ECSECalculator
    from ecse.atomistic.md import run_nve

    if restraint is not None:
        model = Restrained(model, **restraint)
    steps = int(round(ps * 1000 / args.timestep))
    t = seconds_per_call(model, to_data(atoms))
    if steps * t > args.nve_budget:
        steps = int(args.nve_budget / t)
        if steps * args.timestep / 1000 < 0.1:
            log(f"    NVE {label}: skipped, {t:.2f} s per step allows under 0.1 ps within {args.nve_budget:.0f} s")
            return {"skipped": f"{t:.2f} s per step"}
    keep = getattr(args, "trajectories", None) is not None
    name = f"{atoms.get_chemical_formula()}_{label}".replace(" ", "_").replace("=", "").replace(",", "_")
    logs = getattr(args, "nve_logs", None)
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    restarts = getattr(args, "nve_restart", None)
    if restarts is not None:
        restarts.mkdir(parents=True, exist_ok=True)
    res = run_nve(atoms, ECSECalculator(model), timestep_fs=args.timestep, steps=steps,
                  temperature_K=temperature, seed=args.seed, keep_frames=keep, desc=f"NVE {label}",
                  logfile=None if logs is None else logs / f"{name}.log",
                  restart=None if restarts is None else restarts / f"{name}_seed{args.seed}.npz")
    if keep:
        from ase.io import write

        args.trajectories.mkdir(parents=True, exist_ok=True)
        write(args.trajectories / f"{name}.extxyz", res.frames)
    return {"ps": steps * args.timestep / 1000, "steps": steps, "drift": res.drift_per_atom_per_ps,
            "drift_se": res.drift_stderr_per_atom_per_ps(),
            "excursion": res.max_deviation_per_atom, "seconds": res.wall_time_s,
            "mean_T": float(res.temperature_K.mean())}


# ---- the benchmark ----------------------------------------------------------------------------

def measure_system(name: str, args, log) -> dict:
    atoms, source = probe_structure(name, args)
    log(f"\n## {name}: {source}")
    pet, info = trained_pet(MODEL_OF[name], args)
    row = {"system": name, "source": source, "atoms": len(atoms), "training": info, "curvature": {}, "nve": {}}
    prof = Profiles(atoms, args)
    models = {"trained": pet, "near-invariant": near_invariant(pet, atoms)}
    row["near_invariant_scale"] = models["near-invariant"].scale
    for kind, bare in models.items():
        for mode in MODES:
            model = wrapped(bare, mode)
            row["curvature"][f"{kind}/{mode}"] = r = prof.ratio(f"{kind} {mode}", model, bare, log)
            if "ratio" in r:
                r["frames_per_centre"] = frames_per_centre(model, prof.data)
                log(f"    curvature {kind:14s} {mode:6s}: ratio {r['ratio']:.3g} ({r['curvature']:.4g} vs bare "
                    f"{r['bare_curvature']:.4g}; over bare's largest in {len(r['bare_orientations'])} orientations "
                    f"{r['orientation_ratio']:.3g}; {r['points']} points, worst at s = {r['worst_s']:.4f}; "
                    f"{r['frames_per_centre']:.1f} frames/centre)", flush=True)
    if args.nve_ps > 0 and name != "water192":
        for mode in ("bare", *MODES):
            model = pet if mode == "bare" else wrapped(pet, mode)
            row["nve"][mode] = r = nve(model, atoms, TEMPERATURE[name], args.nve_ps, args, log, mode,
                                       restraint_pairs(name, atoms))
            if "drift" in r:
                log(f"    NVE {mode:6s}: {r['ps']:.2f} ps, drift {drift_text(r)} eV/atom/ps, excursion "
                    f"{r['excursion']:.2e} eV/atom, <T> {r['mean_T']:.0f} K [{r['seconds']:.0f} s]", flush=True)
    return row


def sweep(name: str, args, log) -> list[dict]:
    atoms, _ = probe_structure(name, args)
    pet, _ = trained_pet(MODEL_OF[name], args)
    prof = Profiles(atoms, args)
    out = []
    for label, setting in SWEEP:
        for mode in MODES:
            model = wrapped(pet, mode, setting)
            row = {"system": name, "setting": label, "kwargs": setting, "mode": mode,
                   "frames_per_centre": frames_per_centre(model, prof.data)}
            row.update(prof.ratio(f"{label} {mode}", model, pet, log, args.sweep_budget))
            if name == "methane" and args.sweep_nve_ps > 0:
                row["nve"] = nve(model, atoms, TEMPERATURE[name], args.sweep_nve_ps, args, log, f"{label} {mode}",
                                 restraint_pairs(name, atoms))
            out.append(row)
            log(_sweep_line(row), flush=True)
    if name == "methane" and args.sweep_nve_ps > 0:
        bare = nve(pet, atoms, TEMPERATURE[name], args.sweep_nve_ps, args, log, "bare", restraint_pairs(name, atoms))
        out.append({"system": name, "setting": "bare", "mode": "bare", "nve": bare})
        log(f"| {name} | bare PET | - | - | - | {drift_text(bare)} | "
            f"{_fmt(bare.get('excursion'), '.2e')} |")
    return out


def parse_setting(spec: str) -> dict:
    """``"num_prunings=0,radial_width=0.5"`` -> ``ECSE`` keyword arguments (``"defaults"``: none)."""
    if spec == "defaults":
        return {}
    return {key: (int(value) if key == "num_prunings" else float(value))
            for key, value in (item.split("=") for item in spec.split(","))}


def nve_settings(name: str, specs: list, args, log) -> list[dict]:
    """NVE of bare PET and of ``ECSE(pet, 5.0, mode=MODE, **setting)`` for each setting and
    each of ``args.nve_modes``, same trained PET, start and length (``--nve-ps``)."""
    atoms, _ = probe_structure(name, args)
    pet, _ = trained_pet(MODEL_OF[name], args)
    restraint = restraint_pairs(name, atoms)
    bare = nve(pet, atoms, TEMPERATURE[name], args.nve_ps, args, log, "bare", restraint)
    log(f"| {name} | bare PET | - | - | {drift_text(bare)} | {_fmt(bare.get('excursion'), '.2e')} |")
    out = [{"system": name, "setting": "bare", "mode": "bare", "nve": bare}]
    for spec in specs:
        for mode in args.nve_modes:
            from ecse import ECSE

            model = ECSE(pet, CUTOFF, mode=mode, **parse_setting(spec)).eval()
            frames = frames_per_centre(model, to_data(atoms))
            r = nve(model, atoms, TEMPERATURE[name], args.nve_ps, args, log, f"{spec} {mode}", restraint)
            out.append({"system": name, "setting": spec, "mode": mode, "frames_per_centre": frames, "nve": r})
            ratio = {k: (f" ({abs(r[k] / bare[k]):.2g}x)" if k in r and bare.get(k) else "") for k in ("drift", "excursion")}
            log(f"| {name} | {spec} | {mode} | {frames:.2f} | {drift_text(r)}{ratio['drift']} | "
                f"{_fmt(r.get('excursion'), '.2e')}{ratio['excursion']} |", flush=True)
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def drift_text(r: dict) -> str:
    """``"+1.0e-06 +- 1.3e-06"``: an NVE result's drift and its standard error
    (``MDResult.drift_stderr_per_atom_per_ps``), ``"-"`` if it has none."""
    if r.get("drift") is None:
        return "-"
    se = r.get("drift_se")
    return f"{r['drift']:+.2e}" + ("" if se is None or math.isnan(se) else f" +- {se:.1e}")


def _sweep_line(r: dict) -> str:
    n = r.get("nve", {})
    grid = "" if r.get("points", args_points_default) == args_points_default else f" ({r.get('points', '-')} pts)"
    return (f"| {r['system']} | {r['setting']} | {r['mode']} | {r['frames_per_centre']:.2f} | "
            f"{_fmt(r.get('ratio'), '.3g')} / {_fmt(r.get('orientation_ratio'), '.3g')}{grid} | "
            f"{_fmt(n.get('drift'), '+.2e')} | {_fmt(n.get('excursion'), '.2e')} |")


args_points_default = 200


def tables(rows: list[dict]) -> str:
    lines = ["### Curvature ratio: max |d2E/ds2| of ECSE(PET) (defaults) over bare PET's, same path "
             "(given orientation / bare's largest over the orientations)",
             "", "| system | atoms | model | global | local | frames/centre (global per structure, local per atom) |",
             "|---|---|---|---|---|---|"]

    def cell(r):
        if "ratio" not in r:
            return f"skipped ({r.get('skipped', '-')})"
        pts = "" if r["points"] == args_points_default else f" ({r['points']} pts)"
        return f"{r['ratio']:.3g} / {r['orientation_ratio']:.3g}{pts}"

    for row in rows:
        for kind in ("trained", "near-invariant"):
            g, lo = row["curvature"][f"{kind}/global"], row["curvature"][f"{kind}/local"]
            lines.append(f"| {row['system']} | {row['atoms']} | {kind} | {cell(g)} | {cell(lo)} | "
                         f"{_fmt(g.get('frames_per_centre'), '.1f')}, {_fmt(lo.get('frames_per_centre'), '.2f')} |")
    lines += ["", "### NVE, trained PET: drift (eV/atom/ps) and max |E_tot - E_tot(0)| (eV/atom); ratio to bare",
              "", "| system | ps | bare drift | global drift (x bare) | local drift (x bare) | bare excursion | "
              "global excursion (x bare) | local excursion (x bare) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        n = row["nve"]
        if not n:
            continue
        b = n["bare"]

        def rel(mode, key):
            r = n.get(mode, {})
            if key not in r:
                return f"skipped ({r.get('skipped', '-')})"
            ratio = abs(r[key] / b[key]) if b.get(key) else math.nan
            pts = "" if abs(r["ps"] - b["ps"]) < 1e-9 else f" [{r['ps']:.2f} ps]"
            return f"{drift_text(r)} ({ratio:.2g}x){pts}" if key == "drift" else f"{r[key]:.2e} ({ratio:.2g}x){pts}"

        lines.append(f"| {row['system']} | {_fmt(b.get('ps'), '.2f')} | {drift_text(b)} | "
                     f"{rel('global', 'drift')} | {rel('local', 'drift')} | {_fmt(b.get('excursion'), '.2e')} | "
                     f"{rel('global', 'excursion')} | {rel('local', 'excursion')} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    global args_points_default
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=ALL_SYSTEMS)
    parser.add_argument("--points", type=int, default=200, help="points of each curvature path")
    parser.add_argument("--orientations", type=int, default=8,
                        help="random orientations of bare PET's path besides the given one (0: none)")
    parser.add_argument("--span", type=float, default=0.2, help="path length (A, Frobenius norm over all atoms)")
    parser.add_argument("--path-seed", type=int, default=0, help="seed of the random path direction")
    parser.add_argument("--nve-ps", type=float, default=2.0, help="NVE length (ps); 0: no NVE")
    parser.add_argument("--timestep", type=float, default=0.5, help="NVE time step (fs)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per curvature profile (coarser grid above)")
    parser.add_argument("--nve-budget", type=float, default=150.0, help="seconds per NVE trajectory (shorter above)")
    parser.add_argument("--sweep-systems", nargs="*", default=["methane", "water", "cu300"], choices=ALL_SYSTEMS)
    parser.add_argument("--sweep-budget", type=float, default=45.0, help="seconds per sweep profile")
    parser.add_argument("--sweep-nve-ps", type=float, default=1.0, help="NVE length of the methane sweep (ps)")
    parser.add_argument("--cu-size", type=int, default=1, help="EMT Cu cell: size**3 cubic cells of 4 atoms")
    parser.add_argument("--train-seconds", type=float, default=150.0, help="training time per PET (s)")
    parser.add_argument("--checkpoints", type=Path, default=Path(tempfile.gettempdir()) / "ecse_smoothness_ckpt",
                        help="where trained PETs are kept and reused (default: a folder in the temp directory)")
    parser.add_argument("--retrain", action="store_true", help="refit even if a checkpoint exists")
    parser.add_argument("--frame-average", choices=["layers", "tokens"], default="layers",
                        help="PET's frame_average in local mode (default: PET's own)")
    parser.add_argument("--nve-settings", nargs="*", default=None,
                        help='only NVE of bare PET and of ECSE with these settings on --systems: "defaults" or '
                             'ECSE keyword arguments such as "num_prunings=0,radial_width=0.5"')
    parser.add_argument("--nve-modes", nargs="+", default=list(MODES), choices=MODES,
                        help="the ECSE modes of --nve-settings")
    parser.add_argument("--seed", type=int, default=0, help="seed of the PETs, training and MD velocities")
    parser.add_argument("--chunk-tokens", type=int, default=None,
                        help="PET's chunk_tokens for every evaluation (0: one call per layer, activations kept; "
                             "default: PET's own). Results equal the default's up to rounding; on small cells "
                             "one call is several times faster")
    parser.add_argument("--trajectories", type=Path, default=None,
                        help="write every NVE trajectory here (extxyz, one file per run; "
                             "benchmarks/frame_probe.py --trajectory reads them)")
    parser.add_argument("--nve-logs", type=Path, default=None,
                        help="stream every NVE run's energies here, one line per step as it runs "
                             "(run_nve's logfile; one file per run)")
    parser.add_argument("--nve-restart", type=Path, default=None,
                        help="keep every NVE run's state here (run_nve's restart file, one per run and seed) and "
                             "continue a run from it when the command is started again (long global-mode runs)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.nve_ps = min(args.points, 41), min(args.nve_ps, 0.05)
        args.sweep_nve_ps = min(args.sweep_nve_ps, 0.05)
        args.budget, args.nve_budget = min(args.budget, 20.0), min(args.nve_budget, 20.0)
        args.sweep_budget = min(args.sweep_budget, 10.0)
        args.orientations = min(args.orientations, 2)
        args.train_seconds = min(args.train_seconds, 10.0)
        args.checkpoints = args.checkpoints / "quick"
    args_points_default = args.points
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "commit": commit,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "loadavg_start": os.getloadavg(),
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    print(f"torch {meta['torch']}, {meta['threads']} thread(s), float64, PET(**SMALL); commit {commit}; "
          f"{meta['date']}; load average {meta['loadavg_start'][0]:.2f}")
    print(f"paths: {args.span} A (Frobenius norm), {args.points} points, direction seed {args.path_seed}; "
          f"budget {args.budget:.0f} s per profile; NVE {args.nve_ps} ps at {args.timestep} fs, "
          f"budget {args.nve_budget:.0f} s per trajectory")
    start = time.perf_counter()
    if args.nve_settings is not None:
        print(f"\n### NVE ({args.nve_ps} ps) of ECSE(PET) with frame settings, ratio to bare\n\n"
              "| system | setting | mode | frames/centre | drift (eV/atom/ps) | excursion (eV/atom) |\n|---|---|---|---|---|---|")
        rows = [r for name in args.systems for r in nve_settings(name, args.nve_settings, args, print)]
        result = {"meta": meta, "nve_settings": rows}
        if args.out:
            args.out.write_text(json.dumps(result, indent=1, default=str))
        return result
    rows = [measure_system(name, args, print) for name in args.systems]
    print("\n" + tables(rows))
    sweeps = []
    if args.sweep_systems:
        print("\n### Pruning sweep, trained PET: frames per centre vs curvature ratio (and NVE on methane)\n\n"
              "| system | pruning setting | mode | frames/centre | curvature ratio (given / orientations) | NVE drift | "
              "NVE excursion |\n"
              "|---|---|---|---|---|---|---|")
        for name in args.sweep_systems:
            sweeps += sweep(name, args, print)
    meta["loadavg_end"] = os.getloadavg()
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load average at the end {meta['loadavg_end'][0]:.2f}")
    result = {"meta": meta, "rows": rows, "sweep": sweeps}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
