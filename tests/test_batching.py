"""scorers.batching.pack_batches: the token-budget batches both model scorers use."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorers.batching import pack_batches

LENGTHS = st.lists(st.integers(-2, 300), max_size=60)


@settings(max_examples=200, deadline=None)
@given(LENGTHS, st.integers(1, 600), st.integers(1, 40))
def test_every_index_once_within_budget(lengths: list[int], budget: int, max_bs: int) -> None:
    batches = pack_batches(lengths, budget, max_bs)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(b for b in batches)
    for b in batches:
        assert len(b) <= max_bs
        longest = max(max(1, lengths[i]) for i in b)
        # the budget holds, except for one text longer than the budget, alone
        assert len(b) * longest <= budget or len(b) == 1


@settings(max_examples=200, deadline=None)
@given(LENGTHS, st.integers(1, 600), st.integers(1, 40))
def test_sorted_longest_first_and_deterministic(
    lengths: list[int], budget: int, max_bs: int
) -> None:
    batches = pack_batches(lengths, budget, max_bs)
    flat = [i for b in batches for i in b]
    # decreasing length, ties in index order: the order is a function of the lengths only
    assert flat == sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    assert pack_batches(list(lengths), budget, max_bs) == batches
    assert pack_batches(tuple(lengths), budget, max_bs) == batches


@settings(max_examples=200, deadline=None)
@given(LENGTHS, st.integers(1, 600), st.integers(1, 40))
def test_batches_are_cut_only_when_needed(lengths: list[int], budget: int, max_bs: int) -> None:
    """Greedy: adding the next text to a batch would break the budget or the count."""
    batches = pack_batches(lengths, budget, max_bs)
    for cur in batches[:-1]:
        longest = max(max(1, lengths[i]) for i in cur)
        assert len(cur) == max_bs or (len(cur) + 1) * longest > budget


def test_examples() -> None:
    assert pack_batches([], 100, 8) == []
    # short texts in a large batch, long ones in small batches
    assert pack_batches([10, 50, 10, 50, 10, 10], 100, 8) == [[1, 3], [0, 2, 4, 5]]
    assert pack_batches([10] * 5, 100, 2) == [[0, 1], [2, 3], [4]]
    assert pack_batches([500, 3], 100, 8) == [[0], [1]]  # over-long: alone
    assert pack_batches([0, 0, 0], 2, 8) == [[0, 1], [2]]  # length 0 counts as 1
    with pytest.raises(ValueError):
        pack_batches([1], 10, 0)


def test_lm_uses_the_shared_helper() -> None:
    pytest.importorskip("torch")
    import scorers.lm

    assert scorers.lm.pack_batches is pack_batches
