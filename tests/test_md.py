"""NVE molecular dynamics (:mod:`ecse.atomistic.md`) and the MD notebook.

Energies, momenta and the drift are checked against quantities recomputed independently
from the stored frames (a fresh calculator, numpy sums and a numpy least-squares fit).
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ase")
from ase import units  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.cluster import Icosahedron  # noqa: E402

from ecse.backbones import PET  # noqa: E402
from ecse import ECSE  # noqa: E402
from ecse.atomistic import ECSECalculator  # noqa: E402
from ecse.atomistic._md_restart import RestartWriter, rows_path  # noqa: E402
from ecse.atomistic.md import (MDResult, energy_drift, energy_drift_stderr, energy_excursion,  # noqa: E402
                               run_nve, verlet_step_errors)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_pet_methane_md.ipynb"
TINY = dict(cutoff=3.0, d_model=16, num_gnn_layers=1, num_transformer_layers=1, num_heads=2,
            dim_feedforward=32, head_hidden=16)


class ScaledForces(EMT):
    """EMT whose forces are scaled: no longer minus the gradient of its energy."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["forces"] = self.results["forces"] * self.factor


class BrokenECSECalculator(ECSECalculator):
    """``ECSECalculator`` returning ``1.1 * forces``."""

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["forces"] = self.results["forces"] * 1.1


class WithSprings(torch.nn.Module):
    """``model(data)`` plus harmonic springs ``k/2 (r_ij - r0_ij)^2`` on all pairs (one molecule).

    The springs keep the atoms near the reference geometry: a randomly initialised PET alone
    pushes them apart within tens of fs. They are rotation and translation invariant, so they
    exert no net force or torque themselves.
    """

    def __init__(self, model: torch.nn.Module, reference: np.ndarray, k: float = 5.0):
        super().__init__()
        self.model, self.k = model, k
        ref = torch.as_tensor(reference, dtype=torch.float64)
        self.register_buffer("r0", (ref[:, None] - ref[None]).norm(dim=-1) + torch.eye(len(ref), dtype=ref.dtype))

    def forward(self, data):
        diff = data.pos[:, None] - data.pos[None]
        r = (diff.pow(2).sum(-1) + torch.eye(len(data.pos), dtype=diff.dtype)).sqrt()  # r_ii = 1 = r0_ii: no sqrt(0)
        return self.model(data) + 0.25 * self.k * (r - self.r0).pow(2).sum().reshape(1)


class Tethers(EMT):
    """Every atom on a spring to the origin, ``U = k/2 sum |x|^2``: forces linear in x."""

    def __init__(self, k: float = 2.0):
        super().__init__()
        self.k = k

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        self.atoms = atoms.copy()
        x = atoms.positions
        energy = 0.5 * self.k * float((x ** 2).sum())
        self.results = {"energy": energy, "free_energy": energy, "forces": -self.k * x}


def _cluster():
    return Icosahedron("Cu", 2)  # 13 atoms, open boundaries


def _independent(result: MDResult):
    """Potential (fresh EMT), kinetic energy and momenta recomputed from the stored frames."""
    epot, ekin, mom, ang = [], [], [], []
    for frame in result.frames:
        atoms = frame.copy()
        atoms.calc = EMT()
        p, m = frame.get_momenta(), frame.get_masses()
        epot.append(atoms.get_potential_energy())
        ekin.append(0.5 * float((p ** 2 / m[:, None]).sum()))
        rel = frame.positions - (m[:, None] * frame.positions).sum(0) / m.sum()
        mom.append(p.sum(0))
        ang.append(np.cross(rel, p).sum(0))
    return np.array(epot), np.array(ekin), np.array(mom), np.array(ang)


@pytest.fixture(scope="module")
def emt_run():
    return run_nve(_cluster(), EMT(), timestep_fs=1.0, steps=200, temperature_K=500, seed=0, keep_frames=True)


def test_emt_energies_time_and_drift_match_independent_values(emt_run):
    res = emt_run
    assert len(res.frames) == len(res.time_ps) == 201 and res.n_atoms == 13
    np.testing.assert_allclose(res.time_ps, np.arange(201) * 1.0e-3, rtol=0, atol=1e-15)
    epot, ekin, _, _ = _independent(res)
    np.testing.assert_allclose(res.potential_energy, epot, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.kinetic_energy, ekin, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.total_energy, epot + ekin, rtol=0, atol=1e-10)
    design = np.stack([res.time_ps, np.ones_like(res.time_ps)], axis=1)
    slope = np.linalg.lstsq(design, epot + ekin, rcond=None)[0][0]
    assert res.drift_per_atom_per_ps == pytest.approx(slope / 13, rel=1e-6, abs=1e-12)
    assert res.max_deviation_per_atom == pytest.approx(np.abs(epot + ekin - epot[0] - ekin[0]).max() / 13,
                                                       rel=1e-9)
    # the kinetic energy changes by much more than the total energy
    assert np.ptp(ekin) > 0.05 * 13
    assert abs(res.drift_per_atom_per_ps) < 1e-4 and res.max_deviation_per_atom < 2e-4
    assert "drift" in res.summary() and "eV/atom/ps" in res.summary()


def _synthetic(energy: np.ndarray, dt_ps: float = 5e-4, n_atoms: int = 4) -> MDResult:
    t = np.arange(len(energy)) * dt_ps
    zeros = np.zeros(len(energy))
    return MDResult(t, zeros, zeros, energy, zeros, np.zeros((len(energy), 3)), np.zeros((len(energy), 3)),
                    n_atoms, dt_ps * 1000, len(energy) - 1, 0.0)


def test_drift_standard_error_covers_the_true_drift_about_95_percent_of_the_time():
    """Total energies = a known drift + white noise: the drift is within two standard errors
    of the truth in about 95 % of independent runs, and adding a fast oscillation (which the
    blocks average out) hardly changes the error; an exact line has none; too short a run
    gives nan."""
    gen = np.random.default_rng(0)
    t = np.arange(4001) * 5e-4  # 2 ps at 0.5 fs
    covered, errors = 0, []
    for _ in range(300):
        noise = 2e-5 * gen.standard_normal(t.size)
        res = _synthetic(4 * (1e-5 * t + noise))
        se = res.drift_stderr_per_atom_per_ps()
        covered += abs(res.drift_per_atom_per_ps - 1e-5) < 2 * se
        errors.append(se)
        oscillating = _synthetic(4 * (1e-5 * t + 3e-4 * np.sin(2 * np.pi * t / 0.01) + noise))
        assert oscillating.drift_stderr_per_atom_per_ps() == pytest.approx(se, rel=0.02)
    assert 0.90 <= covered / 300 <= 0.99
    # the error of a slope fitted to 20 block means of 200 steps each, from the noise alone
    expected = 2e-5 / np.sqrt(200) / np.sqrt(((np.arange(20) * 0.1 - 0.95) ** 2).sum())
    assert np.median(errors) == pytest.approx(expected, rel=0.1)
    assert _synthetic(4 * (1e-5 * t + 1.0)).drift_stderr_per_atom_per_ps() < 1e-12
    assert np.isnan(_synthetic(np.ones(500)).drift_stderr_per_atom_per_ps())  # 0.25 ps: two whole blocks
    with pytest.raises(ValueError, match="block_ps"):
        _synthetic(np.ones(500)).drift_stderr_per_atom_per_ps(0.0)


def test_drift_functions_on_any_series_match_independent_values():
    """The drift, its standard error and the excursion of a bare series (a replay's cumulative
    error) against a numpy least-squares fit, a hand-made block fit and a hand-picked maximum;
    a series that starts later in time gives the same values as one starting at zero."""
    gen = np.random.default_rng(3)
    t = np.arange(2001) * 5e-4
    e = 3e-5 * t + 1e-5 * gen.standard_normal(t.size)
    design = np.stack([t, np.ones_like(t)], axis=1)
    assert energy_drift(t, e) == pytest.approx(np.linalg.lstsq(design, e, rcond=None)[0][0], rel=1e-9)
    # ten whole blocks of 200 steps, the last (one-step) block left out
    tb, eb = t[:2000].reshape(10, 200).mean(1), e[:2000].reshape(10, 200).mean(1)
    coef, res, *_ = np.linalg.lstsq(np.stack([tb, np.ones(10)], axis=1), eb, rcond=None)
    expected = np.sqrt(res[0] / 8 / ((tb - tb.mean()) ** 2).sum())
    assert energy_drift_stderr(t, e) == pytest.approx(expected, rel=1e-9)
    assert energy_drift_stderr(t + 0.73, e) == pytest.approx(expected, rel=1e-9)
    assert energy_drift(t + 0.73, e) == pytest.approx(energy_drift(t, e), rel=1e-9)
    assert energy_excursion([2.0, 2.5, 1.1, 2.9]) == pytest.approx(0.9)
    assert energy_excursion(e) == pytest.approx(np.abs(e - e[0]).max())
    assert np.isnan(energy_drift([0.0], [1.0])) and np.isnan(energy_drift_stderr(t[:700], e[:700]))
    with pytest.raises(ValueError, match="one length"):
        energy_drift(t, e[:-1])
    with pytest.raises(ValueError, match="finite"):
        energy_drift_stderr(t, np.where(t > 0.5, np.nan, e))
    with pytest.raises(ValueError, match="non-empty"):
        energy_excursion([])


def test_emt_scaled_forces_violate_the_tolerances():
    res = run_nve(_cluster(), ScaledForces(1.1), timestep_fs=1.0, steps=200, temperature_K=500, seed=0)
    assert res.max_deviation_per_atom > 2e-3  # ten times the tolerance met by the true forces


def test_momentum_and_angular_momentum_stay_zero(emt_run):
    _, _, mom, ang = _independent(emt_run)
    scale = np.abs(emt_run.frames[0].get_momenta()).max()
    assert np.abs(mom).max() < 1e-12 * 13 * scale
    assert np.abs(ang).max() < 1e-11 * 13 * scale  # EMT is rotation invariant: no torque
    np.testing.assert_allclose(emt_run.momentum, mom * units.fs, rtol=0, atol=1e-14)
    np.testing.assert_allclose(emt_run.angular_momentum, ang * units.fs, rtol=0, atol=1e-13)
    # the initial temperature is not zero, the velocities are nontrivial
    assert emt_run.temperature_K[0] > 100


def test_seeded_runs_repeat_exactly_and_do_not_touch_the_input():
    atoms = _cluster()
    before = atoms.positions.copy()
    a, b = (run_nve(atoms, EMT(), timestep_fs=2.0, steps=15, seed=7) for _ in range(2))
    c = run_nve(atoms, EMT(), timestep_fs=2.0, steps=15, seed=8)
    for name in ("potential_energy", "kinetic_energy", "momentum", "angular_momentum"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.allclose(a.kinetic_energy, c.kinetic_energy)
    assert np.array_equal(atoms.positions, before) and atoms.calc is None
    assert not atoms.has("momenta") or not atoms.get_momenta().any()


def test_log_every_and_given_momenta():
    atoms = _cluster()
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)))
    res = run_nve(atoms, EMT(), timestep_fs=1.0, steps=10, temperature_K=None, log_every=5, keep_frames=True)
    np.testing.assert_allclose(res.time_ps, [0.0, 0.005, 0.01])
    assert np.array_equal(res.frames[0].get_momenta(), atoms.get_momenta())  # kept as given
    zero = run_nve(atoms, EMT(), steps=0, temperature_K=None)
    assert zero.total_energy.shape == (1,) and np.isnan(zero.drift_per_atom_per_ps)


def test_logfile_streams_every_logged_step(tmp_path):
    atoms = _cluster()
    path = tmp_path / "nve.log"
    res = run_nve(atoms, EMT(), timestep_fs=1.0, steps=6, temperature_K=300, seed=3, log_every=2,
                  keep_frames=True, logfile=path)
    table = np.loadtxt(path)
    assert table.shape == (4, 6) and path.read_text().startswith("# NVE")
    np.testing.assert_array_equal(table[:, 0], [0, 2, 4, 6])
    np.testing.assert_allclose(table[:, 1], [0.0, 0.002, 0.004, 0.006])
    # the logged potential energy is EMT's at the kept positions, recomputed independently
    recomputed = []
    for frame in res.frames:
        frame.calc = EMT()
        recomputed.append(frame.get_potential_energy())
    np.testing.assert_allclose(table[:, 2], recomputed, rtol=0, atol=1e-10)
    np.testing.assert_allclose(table[:, 4], table[:, 2] + table[:, 3], rtol=0, atol=1e-10)
    np.testing.assert_allclose(table[:, 4], res.total_energy, rtol=0, atol=1e-10)
    with pytest.raises(FileNotFoundError):
        run_nve(atoms, EMT(), steps=1, logfile=tmp_path / "missing" / "nve.log")


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=-1), "steps"), (dict(steps=2.5), "steps"), (dict(log_every=0), "log_every"),
    (dict(timestep_fs=0.0), "timestep_fs"), (dict(temperature_K=-1.0), "temperature_K")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_nve(_cluster(), EMT(), **kwargs)


class NaNAfter(EMT):
    """EMT whose energy becomes NaN from the ``n``-th evaluation on."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.calls += 1
        if self.calls > self.n:
            self.results["energy"] = float("nan")


def test_non_finite_energy_names_the_step():
    with pytest.raises(FloatingPointError, match="at step 3"):
        run_nve(_cluster(), NaNAfter(3), steps=10)


def test_progress_bar_with_and_without_tqdm(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    res = run_nve(_cluster(), EMT(), steps=4, progress=True, desc="cluster")
    assert "cluster" in capsys.readouterr().err and len(res.time_ps) == 5
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    res = run_nve(_cluster(), EMT(), steps=4, progress=True, desc="cluster")
    assert "cluster" not in capsys.readouterr().err and len(res.time_ps) == 5


@pytest.fixture(scope="module")
def tiny_pet():
    torch.manual_seed(0)
    return PET(**TINY).double().eval()


def test_ecse_pet_conserves_energy_and_broken_forces_do_not(tiny_pet):
    """ECSE(tiny PET) in float64, 40 fs: the total energy stays within 4% of the range of the
    potential energy; with 1.1 * forces it changes by ~10% of that range."""
    methane = molecule("CH4")
    model = WithSprings(ECSE(tiny_pet, cutoff=3.0), methane.positions)
    runs = {name: run_nve(methane, calc(model), timestep_fs=0.5, steps=80, temperature_K=300, seed=0)
            for name, calc in [("ecse", ECSECalculator), ("broken", BrokenECSECalculator)]}
    ratio = {name: np.abs(r.total_energy - r.total_energy[0]).max() / np.ptp(r.potential_energy)
             for name, r in runs.items()}
    assert np.ptp(runs["ecse"].potential_energy) > 0.05  # the atoms really move
    assert ratio["ecse"] < 0.04, ratio
    assert ratio["broken"] > 0.06, ratio
    assert np.abs(runs["ecse"].momentum).max() < 1e-12


def test_ecse_conserves_angular_momentum_bare_pet_does_not(tiny_pet):
    """Exact rotation invariance means zero torque: velocity Verlet then keeps the angular
    momentum at zero; the bare PET's forces have a net torque."""
    methane = molecule("CH4")
    runs = {name: run_nve(methane, ECSECalculator(WithSprings(model, methane.positions)), timestep_fs=0.5,
                          steps=40, temperature_K=300, seed=0)
            for name, model in [("bare", tiny_pet), ("ecse", ECSE(tiny_pet, cutoff=3.0))]}
    assert np.abs(runs["ecse"].angular_momentum).max() < 1e-12
    assert np.abs(runs["bare"].angular_momentum).max() > 1e-6
    # same start: same structure, same seeded velocities
    assert runs["bare"].kinetic_energy[0] == runs["ecse"].kinetic_energy[0]


@pytest.mark.slow
def test_notebook_runs(monkeypatch):
    from .notebooks import run_notebook, stream_text

    outputs = run_notebook(NOTEBOOK, monkeypatch)
    text = stream_text(outputs)
    assert "bare PET" in text and "ECSE(PET)" in text and "eV/atom/ps" in text
    assert any("image/png" in out.get("data", {}) for out in outputs)  # the drift plot


def _periodic_run():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=3)
    return run_nve(atoms, EMT(), timestep_fs=2.0, steps=60, temperature_K=1500, seed=1, keep_frames=True)


def test_verlet_step_errors_replay_the_run_step_by_step(emt_run):
    """On the run's own calculator, each step's error is the logged total-energy change."""
    errors = verlet_step_errors(emt_run.frames, EMT(), timestep_fs=1.0)
    assert errors.shape == (200,)
    np.testing.assert_allclose(errors, np.diff(emt_run.total_energy), rtol=0, atol=1e-10)
    # a wrong time step breaks the identity
    wrong = verlet_step_errors(emt_run.frames, EMT(), timestep_fs=0.5)
    assert np.abs(wrong - np.diff(emt_run.total_energy)).max() > 1e-6


def test_verlet_step_errors_take_periodic_steps_at_their_minimum_image():
    run = _periodic_run()
    wrapped = [f.copy() for f in run.frames]
    for f in wrapped:
        f.wrap()
    moved = sum(not np.allclose(a.positions, b.positions) for a, b in zip(run.frames, wrapped))
    assert moved > 0  # some atom crossed the cell boundary, so the wrapped frames jump
    for frames in (run.frames, wrapped):
        errors = verlet_step_errors(frames, EMT(), timestep_fs=2.0)
        np.testing.assert_allclose(errors, np.diff(run.total_energy), rtol=0, atol=1e-9)


def test_verlet_step_errors_on_another_surface_match_a_closed_form(emt_run):
    """Forces linear in x make the trapezoid exact: only the telescoping kick term is left."""
    k, dt = 2.0, 1.0 * units.fs
    errors = verlet_step_errors(emt_run.frames, Tethers(k), timestep_fs=1.0)
    x = np.stack([f.positions for f in emt_run.frames])
    m = emt_run.frames[0].get_masses()[None, :, None]
    expected = np.diff(dt ** 2 / 8 * (k ** 2 * x ** 2 / m).sum(axis=(1, 2)))
    np.testing.assert_allclose(errors, expected, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("frames, match", [
    (lambda run: run.frames[:1], "at least 2 frames"),
    (lambda run: [run.frames[0], run.frames[1][:-1]], "frame 1 has other atoms"),
])
def test_verlet_step_errors_bad_input(emt_run, frames, match):
    with pytest.raises(ValueError, match=match):
        verlet_step_errors(frames(emt_run), EMT(), timestep_fs=1.0)
    with pytest.raises(ValueError, match="timestep_fs"):
        verlet_step_errors(emt_run.frames, EMT(), timestep_fs=0.0)


class StopsAfter(EMT):
    """EMT that raises on its ``calls``-th evaluation: an interrupted run."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls = calls

    def calculate(self, *args, **kwargs):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt("interrupted")
        super().calculate(*args, **kwargs)


def test_an_interrupted_run_continues_from_its_restart_file_to_the_same_numbers(tmp_path):
    atoms = _cluster()
    settings = dict(timestep_fs=2.0, steps=20, temperature_K=600, seed=5, log_every=2)
    whole = run_nve(atoms, EMT(), logfile=tmp_path / "whole.log", **settings)
    restart, log = tmp_path / "state.npz", tmp_path / "part.log"
    with pytest.raises(KeyboardInterrupt):
        run_nve(atoms, StopsAfter(14), logfile=log, restart=restart, restart_every=5, **settings)
    stored = np.load(restart)
    assert int(stored["step"]) == 10  # the last multiple of 5 reached before step 14
    assert len(np.loadtxt(log)) == 7  # the log had gone past the restart point (steps 0-12)
    # resumed with another seed and temperature: both are ignored, the state is read back
    resumed = run_nve(atoms, EMT(), logfile=log, restart=restart, **{**settings, "seed": 99, "temperature_K": 10})
    for name in ("time_ps", "potential_energy", "kinetic_energy", "momentum"):
        assert np.array_equal(getattr(resumed, name), getattr(whole, name)), name
    assert log.read_text().splitlines()[2:] == (tmp_path / "whole.log").read_text().splitlines()[2:]
    assert int(np.load(restart)["step"]) == 20
    # a finished run read back again runs no step and returns the same table
    again = run_nve(atoms, EMT(), restart=restart, **settings)
    assert np.array_equal(again.total_energy, whole.total_energy)


def test_each_save_appends_only_the_new_rows(tmp_path):
    # a long run's saves must not rewrite every earlier row (quadratic in the run's length):
    # a row changed in memory after its save stays as saved
    atoms = _cluster()
    writer = RestartWriter(tmp_path / "state.npz")
    rows = [tuple(float(10 * i + j) for j in range(10)) for i in range(3)]
    writer.save(atoms, 4, rows, 1.0, 2, 0.5)
    rows[0] = (-1.0,) * 10
    rows.append(tuple(float(30 + j) for j in range(10)))
    writer.save(atoms, 6, rows, 1.0, 2, 0.7)
    on_disk = np.fromfile(rows_path(tmp_path / "state.npz"), dtype="<f8").reshape(-1, 10)
    assert on_disk.shape == (4, 10) and on_disk[0, 0] == 0.0 and on_disk[3, 0] == 30.0
    assert int(np.load(tmp_path / "state.npz")["rows_count"]) == 4


@pytest.mark.parametrize("every, steps_saved", [(5, [0, 5, 10, 15, 20]), (6, [0, 6, 12, 18, 20])])
def test_the_state_is_saved_every_restart_every_steps_and_once_at_the_end(tmp_path, monkeypatch, every,
                                                                         steps_saved):
    saved = []
    original = RestartWriter.save

    def counting(self, atoms, step, *args):
        saved.append(step)
        original(self, atoms, step, *args)

    monkeypatch.setattr(RestartWriter, "save", counting)
    run_nve(_cluster(), EMT(), timestep_fs=2.0, steps=20, temperature_K=600, seed=5, log_every=2,
            restart=tmp_path / "state.npz", restart_every=every)
    assert saved == steps_saved  # the last step is not written twice when it is a multiple of every


def _uninterrupted_and_restart(tmp_path):
    atoms = _cluster()
    settings = dict(timestep_fs=2.0, steps=20, temperature_K=600, seed=5, log_every=2)
    whole = run_nve(atoms, EMT(), **settings)
    restart = tmp_path / "state.npz"
    with pytest.raises(KeyboardInterrupt):
        run_nve(atoms, StopsAfter(14), restart=restart, restart_every=5, **settings)
    return atoms, settings, whole, restart


def test_rows_appended_after_the_last_state_are_dropped_on_continuing(tmp_path):
    # a run killed after appending rows but before replacing its state: the state names fewer rows
    atoms, settings, whole, restart = _uninterrupted_and_restart(tmp_path)
    with open(rows_path(restart), "ab") as out:
        out.write(np.full((20, 10), 7.0).tobytes())  # more than the run has left
    resumed = run_nve(atoms, EMT(), restart=restart, **settings)
    assert np.array_equal(resumed.total_energy, whole.total_energy)
    assert np.array_equal(np.fromfile(rows_path(restart), dtype="<f8").reshape(-1, 10)[:, 0], whole.time_ps)


def test_a_state_of_the_earlier_format_still_continues(tmp_path):
    # state files written before the rows file kept every row inside the .npz
    atoms, settings, whole, restart = _uninterrupted_and_restart(tmp_path)
    with np.load(restart) as stored:
        state = {k: stored[k] for k in stored.files if k != "rows_count"}
    state["rows"] = np.fromfile(rows_path(restart), dtype="<f8").reshape(-1, 10)[:int(np.load(restart)["rows_count"])]
    os.remove(rows_path(restart))
    np.savez(restart, **state)
    resumed = run_nve(atoms, EMT(), restart=restart, **settings)
    assert np.array_equal(resumed.total_energy, whole.total_energy)


def test_a_missing_or_short_rows_file_is_refused_by_name(tmp_path):
    atoms, settings, whole, restart = _uninterrupted_and_restart(tmp_path)
    rows_file = rows_path(restart)
    with open(rows_file, "r+b") as out:
        out.truncate(3 * 80)
    with pytest.raises(ValueError, match=r"state\.npz\.rows' holds 3 rows.*names 6"):
        run_nve(atoms, EMT(), restart=restart, **settings)
    os.remove(rows_file)
    with pytest.raises(ValueError, match=r"state\.npz\.rows' is missing"):
        run_nve(atoms, EMT(), restart=restart, **settings)


def test_a_restart_file_of_another_run_is_refused_by_name(tmp_path):
    atoms = _cluster()
    restart = tmp_path / "state.npz"
    run_nve(atoms, EMT(), timestep_fs=2.0, steps=4, seed=0, restart=restart)
    with pytest.raises(ValueError, match=r"state\.npz.*timestep_fs=2.*has 1"):
        run_nve(atoms, EMT(), timestep_fs=1.0, steps=4, restart=restart)
    with pytest.raises(ValueError, match=r"state\.npz.*atoms"):
        run_nve(molecule("H2O"), EMT(), timestep_fs=2.0, steps=4, restart=restart)
    with pytest.raises(ValueError, match=r"state\.npz.*step 4, beyond steps=2"):
        run_nve(atoms, EMT(), timestep_fs=2.0, steps=2, restart=restart)
    with pytest.raises(ValueError, match="restart_every"):
        run_nve(atoms, EMT(), steps=2, restart=restart, restart_every=0)
