"""Bounded memory by default: chunked equals unchunked, the peak memory of the worst cases
CI can afford, and global mode's warning on costly structures."""
import json
import subprocess
import sys
import warnings

import pytest
import torch
from ase.build import bulk, molecule
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

import ecse.backbones._pet_groups as pet_groups
import ecse.ensemble as ensemble_module
from ecse import ECSE
from ecse.atomistic import atoms_to_data
from ecse.atomistic.derivatives import energy_and_forces
from ecse.backbones import PET
from ecse.backbones._pet_local import AtomSequences, chunk_cost
from ecse.ensemble import GLOBAL_PASSES_WARNING, MEMORY_BOUND_GB
from ecse.frameset import PUBLISHED

SMALL = dict(d_model=16, num_heads=2, dim_feedforward=32, head_hidden=16, cutoff=4.0)


def _crystal(n=(2, 1, 1)):
    atoms = bulk("Cu", "fcc", a=3.6).repeat(n)
    atoms.rattle(0.05, seed=3)
    atoms.numbers[0] = 13
    return atoms_to_data(atoms, dtype=torch.float64)


def _count_checkpoints(monkeypatch, module):
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(module, "checkpoint", counted)
    return calls


@pytest.mark.parametrize("mode", ["global", "local"])
@pytest.mark.parametrize("output", ["scalar", "vector"])
def test_chunked_equals_unchunked(monkeypatch, mode, output):
    data = _crystal()
    results = []
    for chunks in (None, 40):
        torch.manual_seed(0)
        pet = PET(**SMALL, output=output, chunk_tokens=chunks, chunk_above=None).double()
        model = ECSE(pet, cutoff=4.0, mode=mode, output=output, chunk_size=chunks).double()
        calls = _count_checkpoints(monkeypatch, ensemble_module if mode == "global" else pet_groups)
        if output == "scalar":
            results.append(torch.cat([t.reshape(-1) for t in energy_and_forces(model, data)]))
        else:
            pos = data.pos.clone().requires_grad_()
            batch = data.clone()
            batch.pos = pos
            y = model(batch)
            (grad,) = torch.autograd.grad(y.pow(2).sum(), pos)
            results.append(torch.cat([y.reshape(-1), grad.reshape(-1)]))
        assert (len(calls) > 3) == (chunks is not None)  # several checkpointed chunks, or none
    assert torch.allclose(results[0], results[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["bare", "local"])
def test_pet_splits_layers_only_above_chunk_above(monkeypatch, mode):
    """Inputs that cost more than ``chunk_tokens`` but not more than ``chunk_above`` run in
    one call per layer (no checkpoint); above it, in checkpointed groups; same numbers."""
    data = _crystal()
    results, counts = [], []
    for above in (10**9, 50, None):
        torch.manual_seed(0)
        pet = PET(**SMALL, chunk_tokens=40, chunk_above=above).double()
        model = pet if mode == "bare" else ECSE(pet, cutoff=4.0, mode="local").double()
        calls = _count_checkpoints(monkeypatch, pet_groups)
        results.append(torch.cat([t.reshape(-1) for t in energy_and_forces(model, data)]))
        counts.append(len(calls))
    assert counts[0] == 0 and counts[1] > 3 and counts[2] == counts[1]
    assert torch.allclose(results[0], results[1], rtol=1e-12, atol=1e-12)
    assert torch.equal(results[1], results[2])
    with pytest.raises(ValueError, match="chunk_above"):
        PET(**SMALL, chunk_above=-1)


def test_pet_chunks_stay_within_their_budget():
    torch.manual_seed(0)
    degree = torch.randint(0, 60, (500,))
    degree[100] = 300  # one long sequence: alone in its chunk
    center = torch.repeat_interleave(torch.arange(500), degree)
    seq = AtomSequences(torch.ones(500, dtype=torch.long), center)
    chunks = seq.chunks(2000, 32.0)
    assert chunks[0][0] == 0 and chunks[-1][1] == 500 and chunks[-1][3] == center.numel()
    for (s0, s1, t0, t1), nxt in zip(chunks, chunks[1:] + [None]):
        assert nxt is None or (nxt[0], nxt[2]) == (s1, t1)  # consecutive, covering everything
        assert t1 - t0 == int(degree[s0:s1].sum())
        cost = float(chunk_cost(torch.tensor(s1 - s0), degree[s0:s1].max() + 1, 32.0))
        assert cost <= 2000 or s1 - s0 == 1
        if nxt is not None:  # the next sequence would not have fitted
            assert float(chunk_cost(torch.tensor(s1 - s0 + 1), degree[s0:s1 + 1].max() + 1, 32.0)) > 2000
    assert seq.chunks(None, 32.0) == [(0, 500, 0, center.numel())]


# ----------------------------------------------------------------------------- peak memory
_WORKER = r"""
import json, resource, sys, time, warnings
import torch
from ase.build import bulk
torch.set_num_threads(1)
from ecse import ECSE
from ecse.atomistic import atoms_to_data
from ecse.atomistic.derivatives import energy_and_forces
from ecse.backbones import PET
mode, symbol, lattice, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = atoms_to_data(bulk(symbol, lattice, cubic=True).repeat(repeat), dtype=torch.float64)
if mode == "bare":
    model = PET().double()
elif mode == "bare-wide":  # a PET four times as wide as PET()
    model = PET(d_model=512, dim_feedforward=2048, head_hidden=512).double()
elif mode == "tokens":  # local mode with PET's frame-averaged tokens
    model = ECSE(PET(frame_average="tokens"), cutoff=5.0, mode="local").double()
else:
    model = ECSE(PET(), cutoff=5.0, mode=mode).double()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    energy, forces = energy_and_forces(model, data)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024 / 1e9  # kB on Linux
print(json.dumps({"growth_gb": growth, "seconds": time.perf_counter() - start, "atoms": data.num_nodes,
                  "finite": bool(torch.isfinite(forces).all())}))
"""


def _fresh(worker: str, *args) -> dict:
    """The last stdout line (JSON) of ``worker`` run with ``args`` in a fresh process, one thread."""
    out = subprocess.run([sys.executable, "-c", worker, *map(str, args)], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak(*case) -> dict:
    """``_WORKER``'s result for ``case`` (mode, symbol, lattice, repeat) in a fresh process."""
    return _fresh(_WORKER, *case)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kB and malloc_trim: Linux")
@pytest.mark.parametrize("case", [
    ("local", "Cu", "fcc", 2),      # perfect fcc, 32 atoms: 768 frame copies (7.7 GB unchunked)
    ("global", "Si", "diamond", 1),  # perfect diamond, 8 atoms: 96 passes of the cell (5 GB unchunked)
    ("tokens", "Cu", "fcc", 4),  # perfect fcc, 256 atoms: 1.3 million frame copies of edges, in groups
], ids=["local-fcc32", "global-diamond8", "tokens-fcc256"])
def test_default_peak_memory_of_perfect_crystals(case):
    result = _peak(*case)
    assert result["finite"]
    # far below the bound for 2000 atoms (unchunked, these take 7.7 and 5 GB)
    assert result["growth_gb"] < min(1.0, MEMORY_BOUND_GB), result


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kB: Linux")
def test_default_peak_memory_of_one_unsplit_call():
    """Perfect diamond carbon, 64 atoms (86 neighbours each): within ``chunk_above``, so bare
    ``PET()`` runs each layer in one call with its activations kept; the largest such
    input stays well inside the bound."""
    from ecse.backbones._pet_local import chunk_cost
    from ecse.neighbors import neighbor_list

    data = atoms_to_data(bulk("C", "diamond", cubic=True).repeat(2), dtype=torch.float64)
    nl = neighbor_list(data.pos, 5.0, torch.zeros(64, dtype=torch.long), data.cell, data.pbc)
    length = int(torch.bincount(nl.center).max()) + 1
    cost = float(chunk_cost(torch.tensor(64), torch.tensor(length), PET().attention_length))
    assert 0.7 * PET().chunk_above < cost <= PET().chunk_above  # near the largest unsplit input
    result = _peak("bare", "C", "diamond", 2)
    assert result["finite"] and result["atoms"] == 64
    assert result["growth_gb"] < 0.6 * MEMORY_BOUND_GB, result


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kB: Linux")
def test_wide_pet_on_dense_carbon_stays_inside_the_bound():
    """``PET(d_model=512)`` on the same 64 carbon atoms: its ``"auto"`` budgets split what a
    wide PET held in one call (about 5 GB) with the published size's token counts."""
    result = _peak("bare-wide", "C", "diamond", 2)
    assert result["finite"] and result["growth_gb"] < 0.6 * MEMORY_BOUND_GB, result


_FRAMES_WORKER = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
from ecse import local_frames
n = int(sys.argv[1])
g = torch.Generator().manual_seed(0)
pos = (torch.rand(n, 3, generator=g, dtype=torch.float64) * (n / 0.1) ** (1 / 3)).requires_grad_()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lf = local_frames(pos, 5.0)
(lf.weight.sum() + lf.rotation.sum()).backward()
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024 / 1e9
print(json.dumps({"growth_gb": growth, "finite": bool(torch.isfinite(pos.grad).all())}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kB: Linux")
def test_frames_of_a_large_liquid_hold_the_pairs_of_one_block_at_a_time():
    """Local frames (forward and backward) of 8000 points at a liquid's density, about 50
    neighbours each: the adaptive inner cutoff's pairs of neighbours (9 million) are
    evaluated in blocks, so the peak stays far below what they take at once (1.9 GB)."""
    result = _fresh(_FRAMES_WORKER, 8000)
    assert result["finite"] and result["growth_gb"] < 0.8, result


# ----------------------------------------------------------------------------- the warning
def _toy(data):  # any backbone; this one is cheap
    return scatter(data.pos[:, 0] ** 2, data.batch, dim=0, dim_size=data.num_graphs)


def _cu4():
    return atoms_to_data(bulk("Cu", "fcc", cubic=True), dtype=torch.float64)  # 96 frames (24 per atom)


def test_global_mode_warns_once_above_the_threshold(monkeypatch):
    model = ECSE(_toy, cutoff=5.0, aux=None, **PUBLISHED)  # 96 frames (the defaults keep 480)
    with pytest.warns(UserWarning, match=rf"96 backbone passes .*above {GLOBAL_PASSES_WARNING}.*mode='local'") as got:
        model(Batch.from_data_list([_cu4(), _cu4()]))
    assert len([w for w in got if "backbone passes" in str(w.message)]) == 1  # once per call
    assert model.last_stats["frames_per_graph"] == 96
    monkeypatch.setattr(ensemble_module, "GLOBAL_PASSES_WARNING", 96)  # "more than": 96 is not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(_cu4())
    monkeypatch.setattr(ensemble_module, "GLOBAL_PASSES_WARNING", 95)
    with pytest.warns(UserWarning, match="above 95"):
        model(_cu4())


def test_global_mode_warns_once_per_model_whatever_the_number_of_passes():
    """An MD or training loop calls the same model on structures whose pass counts differ:
    one warning per model (Python's own filter would repeat it for every new count)."""
    model = ECSE(_toy, cutoff=5.0, aux=None)
    rattled = _cu4()
    rattled.pos = rattled.pos + 0.05 * torch.randn(rattled.pos.shape, generator=torch.Generator().manual_seed(0),
                                                   dtype=rattled.pos.dtype)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        model(_cu4())
        first = model.last_stats["frames_per_graph"]
        model(rattled)
        second = model.last_stats["frames_per_graph"]
    assert first != second and min(first, second) > GLOBAL_PASSES_WARNING  # two counts, both above
    assert len([w for w in got if "backbone passes" in str(w.message)]) == 1
    with pytest.warns(UserWarning, match="once per model"):  # a new model warns again
        ECSE(_toy, cutoff=5.0, aux=None)(rattled)


def test_no_warning_on_molecules_nor_in_local_mode():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ECSE(_toy, cutoff=5.0, aux=None)(atoms_to_data(molecule("CH4"), dtype=torch.float64))
        torch.manual_seed(0)
        ECSE(PET(**SMALL).double(), cutoff=4.0, mode="local")(_cu4())


def test_release_free_memory_trims_once_per_slack_of_growth(monkeypatch):
    """``malloc_trim`` runs only when the resident memory has grown by more than the slack
    since the last trim (or the lowest level seen after it); slack 0 trims on every call;
    where the resident size cannot be read, every call trims; without ``malloc_trim``, none."""
    import ecse._memory as memory

    resident = iter([100, 105, 95, 106, 97, 107, 108])  # after the trim at 106: 97
    trims = []
    monkeypatch.setattr(memory, "_TRIM", lambda pad: trims.append(pad))
    monkeypatch.setattr(memory, "_resident_bytes", lambda: next(resident))
    monkeypatch.setattr(memory, "_floor", None)
    got = [memory.release_free_memory(slack=10) for _ in range(5)]
    assert got == [False, False, False, True, False] and trims == [0]  # 106 - 95 > 10; 107 - 97 = 10 is not
    monkeypatch.setattr(memory, "_resident_bytes", lambda: 100)
    assert memory.release_free_memory(slack=0) and memory.release_free_memory(slack=0) and len(trims) == 3
    monkeypatch.setattr(memory, "TRIM_SLACK_BYTES", 0)  # the default is read at each call
    assert memory.release_free_memory() and len(trims) == 4
    monkeypatch.setattr(memory, "_resident_bytes", lambda: None)
    assert memory.release_free_memory(slack=10) and len(trims) == 5
    monkeypatch.setattr(memory, "_TRIM", None)
    assert not memory.release_free_memory(slack=0)


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/clear_refs and malloc_trim: Linux")
def test_trim_slack_benchmark_worker_compares_like_with_like(monkeypatch):
    """``benchmarks/trim_slack.py``'s worker: trimming on every chunk and with the slack give
    the same energy, and the former trims before every checkpointed group (per-copy layers
    on 4 Cu atoms are split into many), the latter far less often."""
    from pathlib import Path

    import ecse._memory as memory

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import trim_slack

    original, default = memory._TRIM, memory.TRIM_SLACK_BYTES
    monkeypatch.setattr(memory, "TRIM_SLACK_BYTES", default)  # both restored afterwards
    monkeypatch.setattr(memory, "_TRIM", original)
    every = trim_slack.worker("cu4-small", "every", 1, Path("."))  # sets the slack to 0, counts trims
    memory.TRIM_SLACK_BYTES, memory._TRIM = default, original
    slack = trim_slack.worker("cu4-small", "slack", 1, Path("."))
    assert every["energy"] == pytest.approx(slack["energy"], rel=1e-12, abs=0)
    assert every["trims_per_call"] >= 10 and slack["trims_per_call"] < every["trims_per_call"] / 5


def test_pair_blocks_benchmark_builds_each_class_and_compares_like_with_like(monkeypatch):
    """``benchmarks/pair_blocks.py``: every case has the size its docstring gives, and its
    worker gives the same frames in one pass and in blocks (the one-pass setting changes
    ``PAIR_BLOCK``, restored here)."""
    from pathlib import Path

    import ecse.cutoff as cutoff

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    import pair_blocks

    data = root.parent / "shared" / "data"
    sizes = {"cloud20000": 20000, "water1536": 1536, "cu2048": 2048, "cu2048-perfect": 2048, "c1728": 1728}
    if not (data / "water_bulk_64").exists():
        sizes.pop("water1536")
    for name, atoms in sizes.items():
        pos, cell, pbc = pair_blocks.structure(name, data)
        assert pos.shape == (atoms, 3) and (cell is None) == (name == "cloud20000"), name
    default = cutoff.PAIR_BLOCK
    monkeypatch.setattr(cutoff, "PAIR_BLOCK", default)  # restored afterwards
    one = pair_blocks.worker("cu2048-perfect", "one-pass", 1, data)
    assert cutoff.PAIR_BLOCK == 1 << 40
    cutoff.PAIR_BLOCK = default
    blocks = pair_blocks.worker("cu2048-perfect", "blocks", 1, data)
    assert one["energy"] == pytest.approx(blocks["energy"], rel=1e-12, abs=0) and one["atoms"] == 2048
    assert blocks["copies_per_atom"] == pytest.approx(one["copies_per_atom"])
