"""Frame weights stay smooth near perfect crystal sites: no feature narrower than a fine grid.

Along a random straight path that starts at a perfect hcp or diamond crystal, the
per-atom ensemble average of a direction-dependent function of the frames (what a
backbone evaluated in the frames sees) must have a second derivative that is resolved
by a grid of 1e-3 A (refining it 4 times changes the maximum little) and of the size that
one pruning step of width ``(1 - threshold) * w_max`` gives.  The published pruning,
which compounds its step over 4 rounds, fails both: its features are ~1e-4 A wide.
"""
import pytest
import torch

from ecse import FrameParams, local_frames

ase_build = pytest.importorskip("ase.build")

CUTOFF = 5.0
# (lattice, window of the path coordinate s in A where the compounded pruning had a spike)
CRYSTALS = {
    "hcp": (dict(name="Mg", crystalstructure="hcp", a=3.21, c=5.21), (3, 3, 2), (0.395, 0.415)),
    "diamond": (dict(name="Si", crystalstructure="diamond", a=5.43, cubic=True), (2, 2, 2), (0.735, 0.755)),
}


def _crystal(kind):
    kwargs, repeat, window = CRYSTALS[kind]
    atoms = ase_build.bulk(**kwargs).repeat(repeat)
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    cell = torch.tensor(atoms.cell.array, dtype=torch.float64)[None]
    pbc = torch.tensor(atoms.pbc)[None]
    direction = torch.randn(pos.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return pos, cell, pbc, direction / direction.norm(), window


def _frame_average_curvature(kind, points):
    """max over atoms and s of |d2 G_i / ds2| (finite differences), G_i = sum_k w_ik tr(A F_ik)."""
    pos, cell, pbc, direction, (lo, hi) = _crystal(kind)
    batch = torch.zeros(pos.shape[0], dtype=torch.long)
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    s = torch.linspace(lo, hi, points, dtype=torch.float64)
    values = []
    for si in s:
        lf = local_frames(pos + si * direction, CUTOFF, batch, cell, pbc)
        values.append(lf.combine((lf.rotation * a).sum((1, 2))))
    g = torch.stack(values)
    h = float(s[1] - s[0])
    return float(((g[2:] - 2 * g[1:-1] + g[:-2]) / h**2).abs().max())


@pytest.mark.parametrize("kind", sorted(CRYSTALS))
def test_frame_weights_near_perfect_crystal_sites_are_resolved(kind):
    coarse = _frame_average_curvature(kind, 21)  # h = 1e-3 A
    fine = _frame_average_curvature(kind, 81)  # h = 2.5e-4 A
    assert fine <= 1.5 * coarse + 1.0, (coarse, fine)  # no feature narrower than the coarse grid
    assert fine < 5e3, fine  # here ~8e2 (one step); the compounded published rule: ~4e5 (hcp), ~6e5 (diamond)


def test_frame_probe_benchmark_ranks_pruning_as_rougher():
    """``benchmarks/frame_probe.py`` on a 32-atom fcc cell: the published pruning keeps 24
    frames per atom (the site's rotation group) and its weights are far rougher than the
    120 unpruned frames' (about 50x at this grid)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import frame_probe

    rows = frame_probe.main(["--systems", "fcc", "--settings", "published pruning", "none",
                             "--points", "101", "--paths", "1"])
    pruned, unpruned = rows
    assert pruned["frames_mean"] == 24 and unpruned["frames_mean"] == 120
    assert pruned["curvature_median"] > 10 * unpruned["curvature_median"], rows


def test_frame_probe_along_a_trajectory(tmp_path):
    """``benchmarks/frame_probe.py --trajectory``: a rigid translation changes no frame (all
    second differences zero), and a hydrogen of methane pulled out of the inner cutoff
    (300 steps of 0.004 A) switches the published pruned frames far more abruptly than
    ecse's defaults (measured: 0.30 against 0.001 per step^2)."""
    import sys
    from pathlib import Path

    import numpy as np
    from ase.build import molecule
    from ase.io import write

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import frame_probe

    base = molecule("CH4")
    moved = []
    for t in range(300):
        atoms = base.copy()
        atoms.positions[1] += base.positions[1] / np.linalg.norm(base.positions[1]) * 0.004 * t
        moved.append(atoms)
    published = frame_probe.trajectory_probe(moved, FrameParams.published())
    defaults = frame_probe.trajectory_probe(moved, FrameParams())
    assert published["d2_max"] > 30 * defaults["d2_max"] > 30 * 1e-5, (published, defaults)
    assert published["frames_mean"] < defaults["frames_mean"]
    shifted = [base.copy() for _ in range(5)]
    for t, atoms in enumerate(shifted):
        atoms.positions += [0.01 * t, -0.02 * t, 0.005 * t]
    path = tmp_path / "shifted.extxyz"
    write(path, shifted)
    (row,) = frame_probe.main(["--trajectory", str(path), "--settings", "none"])
    assert row["d2_max"] < 1e-12 and row["r_in_d2_max"] < 1e-12 and row["frames_mean"] > 0, row


def test_frame_probe_finds_the_inner_cutoff_handover_of_a_straightening_water():
    """Opening a water molecule's H-O-H angle from 104 to 175 degrees (0.5 degree steps)
    hands the oxygen's inner cutoff over from its own pair to the next neighbours (a
    second water 2.9 A away): the largest second difference of ``r_in`` is the oxygen's,
    past 150 degrees (sin^2 below 0.24, where the pair stops counting fully)."""
    import sys
    from pathlib import Path

    import numpy as np
    from ase import Atoms

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import frame_probe

    frames = []
    angles = np.arange(104.0, 175.0, 0.5)
    for angle in angles:
        half = np.radians(angle) / 2
        h1, h2 = [0.96 * np.sin(half), 0.96 * np.cos(half), 0], [-0.96 * np.sin(half), 0.96 * np.cos(half), 0]
        frames.append(Atoms("OH2OH2", positions=[[0, 0, 0], h1, h2, [0.3, -2.9, 0.4], [1.0, -3.4, 0.6],
                                                   [-0.5, -3.4, 0.2]]))
    row = frame_probe.trajectory_probe(frames, FrameParams())
    assert row["r_in_worst_atom"] == "O0", row
    assert angles[row["r_in_worst_step"]] > 150, row
    assert row["r_in_d2_max"] > 20 * row["r_in_d2_median"], row
    # the oxygen's r_in itself: 1.52 A up to 163 degrees, 3.57 A past 168 (measured)
    r_in = np.array([float(local_frames(torch.tensor(a.positions), 5.0).inner_cutoff[0]) for a in frames])
    assert r_in[-1] - r_in[0] > 1.5, r_in
    expected = np.abs(r_in[2:] - 2 * r_in[1:-1] + r_in[:-2]).max()
    assert row["r_in_d2_max"] == pytest.approx(expected, rel=1e-9), (row, expected)


def _water_path_curvature(water, params, points=101, span=0.1):
    """max over atoms and s of |d2 G_i / ds2| along one random path (1 A per atom RMS, seed 1,
    ``span`` long) through the periodic water box."""
    pos, cell, pbc = water
    batch = torch.zeros(pos.shape[0], dtype=torch.long)
    direction = torch.randn(pos.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    direction = direction / direction.square().sum(1).mean().sqrt()
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    s = torch.linspace(0.0, span, points, dtype=torch.float64)
    g = torch.stack([lf.combine((lf.rotation * a).sum((1, 2)))
                     for lf in (local_frames(pos + si * direction, CUTOFF, batch, cell, pbc, params) for si in s)])
    h = float(s[1] - s[0])
    return float(((g[2:] - 2 * g[1:-1] + g[:-2]) / h**2).abs().max())


def test_water_hydrogens_adaptive_cutoff_does_not_jump_with_the_default_angular_switch(shared_data):
    """A water hydrogen's pair with its own molecule (sin² about 0.24-0.45 as the molecule
    bends) sits inside the published angular switch (sin² 0.2-0.35; 0.2-0.4 with a 0.2
    width): as its weight changes, the hydrogen's adaptive inner cutoff moves by the
    distance to the next good pair over hundredths of an Å.  ecse's default switch
    (sin² 0.12-0.24) always counts that pair: on the 192-atom DFT water box the frame
    average is about 20x smoother along this path (here ~1.7e3 against ~3.6e4)."""
    from ase.io import read

    from ecse import FrameParams

    atoms = read(shared_data / "water_bulk_64" / "water_deepmd_400.xyz", index=0)
    water = (torch.tensor(atoms.positions, dtype=torch.float64),
             torch.tensor(atoms.cell.array, dtype=torch.float64)[None], torch.tensor(atoms.pbc)[None])
    defaults = _water_path_curvature(water, FrameParams())
    old_switch = _water_path_curvature(water, FrameParams(angle_threshold=0.2, angle_width=0.2))
    assert defaults < 5e3, defaults
    assert old_switch > 5 * defaults, (defaults, old_switch)


def _bent_hydrogen_neighbours(theta: float) -> torch.Tensor:
    """Displacements ``[4, 3]`` from a water hydrogen to its neighbours when its molecule is
    opened to H-O-H = ``theta`` (degrees): own oxygen at 0.98 Å, the sibling hydrogen 0.98 Å
    from that oxygen, and two atoms of other molecules near 2.9 Å (the next good pairs)."""
    import math

    t = math.radians(theta)
    oxygen = torch.tensor([0.98, 0.0, 0.0], dtype=torch.float64)
    sibling = oxygen + 0.98 * torch.tensor([-math.cos(t), math.sin(t), 0.0], dtype=torch.float64)
    others = torch.tensor([[0.3, -0.5, 2.85], [-2.0, -1.9, 0.7]], dtype=torch.float64)
    return torch.cat([oxygen[None], sibling[None], others])


def _bent_hydrogen_inner_cutoff(params, thetas):
    """``r_in`` of the hydrogen of :func:`_bent_hydrogen_neighbours` at each H-O-H in ``thetas``."""
    from ecse.cutoff import adaptive_inner_cutoff

    start, width = params.cutoff_angle_switch()
    return torch.stack([adaptive_inner_cutoff(torch.zeros(4, dtype=torch.long), _bent_hydrogen_neighbours(theta), 1,
                                              CUTOFF, params.beta, start, width, params.radial_width)[0]
                        for theta in thetas])


def test_bending_water_hands_its_inner_cutoff_over_gradually():
    """Opened far enough, a water molecule's own pair stops being a good pair for its
    hydrogens, and ``r_in`` moves out to the next pairs (~1.3 Å further).  Starting the
    cutoff's switch at sin² 0.03 (the default) instead of at the frames' threshold spreads
    that over about 40° instead of 15° of bend: the largest |d²r_in/dθ²| falls from
    ~0.38 to ~0.045 Å/deg²."""
    thetas = torch.linspace(100.0, 175.0, 751, dtype=torch.float64).tolist()
    h = thetas[1] - thetas[0]

    def largest_curvature(params):
        r = _bent_hydrogen_inner_cutoff(params, thetas)
        assert 1.2 < float(r.max() - r.min()) < 1.6  # the handover happens in this range of bends
        return float(((r[2:] - 2 * r[1:-1] + r[:-2]) / h**2).abs().max())

    default = largest_curvature(FrameParams())
    at_threshold = largest_curvature(FrameParams(cutoff_angle_start=FrameParams().angle_threshold))
    assert default < 0.08, default
    assert at_threshold > 4 * default, (default, at_threshold)


@pytest.mark.parametrize("start", [0.0, -0.1, 0.24, 0.3])
def test_cutoff_angle_start_outside_its_range_is_refused(start):
    with pytest.raises(ValueError, match="cutoff_angle_start"):
        FrameParams(cutoff_angle_start=start)


@pytest.mark.parametrize("params", [FrameParams(), FrameParams(cutoff_angle_start=0.12)],
                         ids=["defaults", "start-at-threshold"])
def test_local_frames_of_both_pipelines_use_the_cutoff_angle_start(params):
    """``local_frames`` (ECSE's local mode) and ``ecse.pyg``'s ``edge_local_frames`` give the
    bent hydrogen the inner cutoff of ``cutoff_angle_start``'s switch; at an H-O-H of 140°
    the two switches differ by several tenths of an Å."""
    from ecse.pyg.edge_frames import edge_local_frames

    expected = _bent_hydrogen_inner_cutoff(params, [140.0])[0]
    other = _bent_hydrogen_inner_cutoff(FrameParams(cutoff_angle_start=0.2 if params.cutoff_angle_start < 0.1
                                                    else 0.03), [140.0])[0]
    assert abs(float(expected - other)) > 0.2  # the check can tell the switches apart
    vector = _bent_hydrogen_neighbours(140.0)
    pos = torch.cat([torch.zeros(1, 3, dtype=torch.float64), vector])
    lf = local_frames(pos, CUTOFF, torch.zeros(5, dtype=torch.long), params=params)
    torch.testing.assert_close(lf.inner_cutoff[0], expected)
    edge_lf = edge_local_frames(torch.zeros(4, dtype=torch.long), vector, 1, CUTOFF, params=params)
    torch.testing.assert_close(edge_lf.inner_cutoff[0], expected)
