"""The curvature of ECSE(PET) with ``ECSE``'s own defaults stays within a bound of the bare PET's.

Along one random straight path (direction seed 0; 1.0 A, the Frobenius norm of the
displacement of all atoms, i.e. 0.3 A RMS per atom) the largest ``|d2E/ds2|`` of
``ECSE(pet, cutoff=5.0)`` (global, 51 points) and ``ECSE(pet, cutoff=5.0, mode="local")``
(101 points) is compared with that of the bare PET with the same weights on the same
grid (:func:`ecse.testing.assert_smooth`), on a small periodic water cell (4 molecules)
and a 4-atom thermal fcc Cu cell (EMT Langevin snapshot).  The bound is issue 15's
target, 3.  The path is longer than the benchmark's 0.2 A so that frame weights switch
on it in cells this small (along 0.2 A paths through the water cell no weight changes,
the ratio is 0.6-1.3 in both modes whatever the switches).

With the published frame settings (pruning, 0.15 Å radial switches) three of the four
cases miss the bound (ratios 85, 39 and 7.1); ecse's defaults meet it in all four.
``test_a_steeper_switch_is_caught`` shows that the check fails when every switch of the
frames is made five times steeper, on a path where a frame weight switches.
"""
import pytest
import torch

pytest.importorskip("ase")
from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402

from ecse import ECSE  # noqa: E402
from ecse.atomistic import atoms_to_data  # noqa: E402
from ecse.atomistic.emt import emt_structures  # noqa: E402
from ecse.backbones import PET  # noqa: E402
from ecse.rotations import random_rotation  # noqa: E402
from ecse.testing import assert_smooth  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:ECSE global mode")  # a 4-atom crystal needs ~76 passes

TARGET = 3.0  # issue 15: max |d2E/ds2| of the wrapped model <= 3x the bare model's
SPAN = 1.0
POINTS = {"local": 101, "global": 51}
TINY = dict(d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=2, dim_feedforward=8, head_hidden=8)


def water_cell() -> Atoms:
    """4 water molecules (randomly oriented, on alternate sites of a 2x2x2 grid 2.46 A apart)
    in a periodic 4.92 A cube: about the density of liquid water, closest O-O about 3.5 A."""
    gen = torch.Generator().manual_seed(0)
    h2o = torch.as_tensor(molecule("H2O").positions, dtype=torch.float64)
    pos = []
    for site in ((0, 0, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1)):
        rotation = random_rotation(gen, dtype=torch.float64)
        shift = 2.46 * torch.tensor(site, dtype=torch.float64) + 0.3 * torch.rand(3, generator=gen, dtype=torch.float64)
        pos.append(h2o @ rotation.T + shift)
    return Atoms("OH2" * 4, positions=torch.cat(pos).numpy(), cell=[4.92] * 3, pbc=True)


def fcc_cell() -> Atoms:
    (atoms,) = emt_structures("thermal", "Cu", temperature=300.0, n=1, size=1, seed=0)
    return atoms


def tiny_pet() -> PET:
    torch.manual_seed(0)  # default (random, non-zero) heads: the energy depends on orientation
    return PET(cutoff=5.0, chunk_tokens=None, **TINY).double().eval()


def check(mode: str, atoms: Atoms, seed: int = 0):
    pet = tiny_pet()
    model = ECSE(pet, cutoff=5.0, mode=mode)
    data = atoms_to_data(atoms, dtype=torch.float64)
    return assert_smooth(model, pet, data, span=SPAN, points=POINTS[mode], max_ratio=TARGET, seed=seed, batch_size=8)


CASES = [  # all missed with the published settings (ratios 85, 39, 7.1, -), met with ecse's
    pytest.param("local", water_cell, id="water-local"),
    pytest.param("global", water_cell, id="water-global"),
    pytest.param("local", fcc_cell, id="fcc-local"),
    pytest.param("global", fcc_cell, id="fcc-global"),
]


@pytest.mark.parametrize("mode, structure", CASES)
def test_curvature_ratio_of_the_defaults_is_bounded(mode, structure):
    wrapped, bare = check(mode, structure())
    assert abs(bare.worst_curvature) > 0  # the reference is not flat: the ratio means something


def test_a_steeper_switch_is_caught(monkeypatch):
    """Every switch of the frames (weights, cutoffs) five times steeper: on a path where a
    frame weight switches (seed 4; ratio 1.5 with the switches as they are) the check
    fails (ratio 15; much steeper switches make features narrower than the grid's spacing,
    which a finite-difference check cannot see, so the factor is five)."""
    import ecse.switching as switching

    smooth = switching._step_down
    check("local", water_cell(), seed=4)  # passes with the switches as they are
    monkeypatch.setattr(switching, "_step_down", lambda g: smooth(5 * g))
    with pytest.raises(AssertionError, match="not smooth"):
        check("local", water_cell(), seed=4)
