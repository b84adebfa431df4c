"""PET's ``"auto"`` chunk budgets: the published size keeps its token counts, other widths
hold about the same memory per group, and explicit budgets keep their meaning (the peak
memory of a wide PET: ``tests/test_memory.py``)."""
import pytest
import torch
from ase.build import bulk

from ecse.atomistic import atoms_to_data
from ecse.atomistic._hypers import PETHypers
from ecse.backbones import PET
from ecse.backbones._pet_groups import (PUBLISHED_BUDGETS, PUBLISHED_CHUNK_ABOVE, PUBLISHED_CHUNK_TOKENS, auto_budgets,
                                       layer_groups)
from ecse.backbones._pet_local import AtomSequences
from ecse.neighbors import neighbor_list

WIDE = dict(d_model=512, dim_feedforward=2048, head_hidden=512)


def test_published_size_keeps_its_token_counts():
    pet = PET()
    assert (pet.chunk_tokens, pet.chunk_above) == (PUBLISHED_CHUNK_TOKENS, PUBLISHED_CHUNK_ABOVE) == (4096, 12288)
    # the keyword form pins them at another width (what the chunk benchmarks compare)
    small = PET(d_model=32, num_gnn_layers=2, num_transformer_layers=1, dim_feedforward=64, head_hidden=32,
                **PUBLISHED_BUDGETS)
    assert (small.chunk_tokens, small.chunk_above) == (4096, 12288)


def test_auto_budgets_scale_inversely_with_a_tokens_memory():
    # a token's memory grows linearly in d_model and dim_feedforward per transformer layer,
    # plus a width-free part: doubling both roughly halves the budget, never more than halves it
    tokens, above = auto_budgets(128, 512, 3, 3)
    tokens2, above2 = auto_budgets(256, 1024, 3, 3)
    assert tokens / 2 < tokens2 < 0.6 * tokens and above / 2 < above2 < 0.6 * above
    # one call keeps every message-passing layer's activations: twice the layers, half the unsplit size
    assert auto_budgets(128, 512, 3, 6) == (tokens, round(above / 2))
    # more transformer layers or a wider feed-forward block: smaller groups
    assert auto_budgets(128, 512, 6, 3)[0] < tokens and auto_budgets(128, 2048, 3, 3)[0] < tokens
    small = PET(d_model=32, num_gnn_layers=2, num_transformer_layers=1, dim_feedforward=64, head_hidden=32)
    assert small.chunk_tokens > 5 * tokens and small.chunk_above > 5 * above


def test_explicit_budgets_keep_their_meaning_and_bad_ones_are_named():
    pet = PET(**WIDE, chunk_tokens=4096, chunk_above=None)
    assert (pet.chunk_tokens, pet.chunk_above) == (4096, None)
    assert PET(chunk_tokens=None).chunk_tokens is None
    for bad, match in [({"chunk_tokens": "half"}, "chunk_tokens must be an integer, 'auto' or None"),
                       ({"chunk_tokens": 0}, "chunk_tokens must be a positive integer"),
                       ({"chunk_tokens": 2.5}, "chunk_tokens must be a positive"),
                       ({"chunk_tokens": True}, "chunk_tokens must be a positive"),
                       ({"chunk_above": -1}, "chunk_above must be a non-negative integer")]:
        with pytest.raises(ValueError, match=match):
            PET(**bad)


def test_training_config_passes_auto_through():
    assert PETHypers().kwargs()["chunk_tokens"] == "auto" and PETHypers().kwargs()["chunk_above"] == "auto"
    assert PET(**PETHypers(d_model=256, num_heads=4).kwargs()).chunk_tokens == auto_budgets(256, 512, 3, 3)[0]
    with pytest.raises(TypeError, match="chunk_tokens"):
        PETHypers(chunk_tokens="half")
    with pytest.raises(ValueError, match="chunk_above"):
        PETHypers(chunk_above=-1)


def _diamond_carbon():
    return atoms_to_data(bulk("C", "diamond", cubic=True).repeat(2), dtype=torch.float64)


def test_wide_pet_splits_what_the_published_size_runs_in_one_call():
    data = _diamond_carbon()
    nl = neighbor_list(data.pos, 5.0, torch.zeros(64, dtype=torch.long), data.cell, data.pbc)
    seq = AtomSequences(data.z, nl.center)
    groups = {name: layer_groups(seq, p.chunk_tokens, p.chunk_above, p.attention_length)
              for name, p in [("published", PET()), ("wide", PET(**WIDE))]}
    assert len(groups["published"]) == 1 and len(groups["wide"]) > 3


def test_chunk_budget_benchmark_worker_compares_like_with_like(monkeypatch):
    """``benchmarks/chunk_budget.py``'s worker: the two settings give the same energy with
    the budgets they name."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import chunk_budget

    published = chunk_budget.worker("cu4-small", "published", 1, Path("."))
    auto = chunk_budget.worker("cu4-small", "auto", 1, Path("."))
    assert (published["chunk_tokens"], published["chunk_above"]) == (4096, 12288)
    assert (auto["chunk_tokens"], auto["chunk_above"]) == auto_budgets(32, 64, 1, 2)
    assert auto["energy"] == pytest.approx(published["energy"], rel=1e-12, abs=0)
