"""Vectorised enumeration of pairs of neighbours that share a centre."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["group_blocks", "group_slots", "pairs_within_groups"]


def group_slots(group: Tensor, num_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(counts [G], start [G], slot [E])`` of entries sorted by group: how many entries
    each group has, where it starts, and each entry's rank inside its group."""
    counts = torch.bincount(group, minlength=num_groups)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(group.numel(), device=group.device) - start[group]
    return counts, start, slot


def pairs_within_groups(group: Tensor, num_groups: int, ordered: bool) -> tuple[Tensor, Tensor]:
    """All pairs ``(a, b)`` of entries that belong to the same group.

    Args:
        group: group (centre) of each entry, sorted ascending, shape ``[E]``.
        num_groups: number of groups.
        ordered: ``True`` for all ordered pairs ``a != b``; ``False`` for ``a < b``.

    Returns:
        ``(first, second)`` entry indices, each of shape ``[P]``, grouped by centre.

    Example:
        >>> import torch
        >>> pairs_within_groups(torch.tensor([0, 0, 0, 1]), 2, ordered=False)
        (tensor([0, 0, 1]), tensor([1, 2, 2]))
    """
    device = group.device
    num = group.numel()
    if num == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    counts, start, position = group_slots(group, num_groups)
    size = counts[group]
    partners = size - 1 if ordered else size - 1 - position
    first = torch.repeat_interleave(torch.arange(num, device=device), partners)
    pair_start = torch.cumsum(partners, 0) - partners
    k = torch.arange(first.numel(), device=device) - pair_start.index_select(0, first)
    if ordered:
        k = k + (k >= position.index_select(0, first)).long()  # skip the entry itself
        second = start.index_select(0, group.index_select(0, first)) + k
    else:
        second = first + 1 + k
    return first, second


def group_blocks(group: Tensor, num_groups: int, budget: int) -> list[tuple[int, int, int, int]]:
    """Consecutive blocks ``(g0, g1, e0, e1)`` of groups ``g0:g1`` (entries ``e0:e1``)
    holding about ``budget`` unordered pairs each: a block starts where the pairs before
    it reach a multiple of ``budget``, so it holds at most ``budget`` pairs plus one
    group's (a group is never split).

    Example:
        >>> import torch
        >>> group_blocks(torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]), 3, budget=3)
        [(0, 1, 0, 3), (1, 3, 3, 8)]
    """
    counts, start, _ = group_slots(group, num_groups)
    pairs = counts * (counts - 1) // 2
    block = (torch.cumsum(pairs, 0) - pairs) // max(int(budget), 1)
    sizes = torch.unique_consecutive(block, return_counts=True)[1].tolist() if num_groups else []
    blocks, g0 = [], 0
    starts, ends = start.tolist(), (start + counts).tolist()
    for size in sizes:
        blocks.append((g0, g0 + size, starts[g0], ends[g0 + size - 1]))
        g0 += size
    return blocks
