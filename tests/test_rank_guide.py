"""The rank guide: a bounded sample of the signal values, the same whatever the bundling, that
makes the rank sketch's first pass finish the usual signals (pipelines/job/rank_guide.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.job.rank_guide import GuideCombineFn, guide_keys, part_offer
from pipelines.stats import ranks


def offers(sizes: list[int], cap: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        part_offer(f"{i:08d}-000000", {"x": rng.lognormal(0, 1, n), "y": rng.random(n)}, cap)
        for i, n in enumerate(sizes)
    ]


def combine(fn: GuideCombineFn, groups: list[list[dict]]) -> dict:
    accs = []
    for group in groups:
        acc = fn.create_accumulator()
        for offer in group:
            acc = fn.add_input(acc, offer)
        accs.append(acc)
    return fn.extract_output(fn.merge_accumulators(iter(accs)))


def same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in ("hash", "part", "row")) and all(
        np.array_equal(a["columns"][c], b["columns"][c], equal_nan=True) for c in a["columns"]
    )


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3_000), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=8), max_size=3),
    k=st.sampled_from([1, 50, 700]),
)
def test_the_guide_is_the_same_whatever_the_bundling_and_never_over_k_rows(sizes, cuts, k):
    parts = offers(sizes, cap=k)
    fn = GuideCombineFn(k)
    bounds = sorted({min(c, len(parts)) for c in cuts})
    groups = [g for g in np.split(np.arange(len(parts)), bounds) if len(g)]
    a = combine(fn, [[parts[i] for i in g] for g in groups])
    b = combine(fn, [[p] for p in parts[::-1]])
    assert same(a, b)
    assert len(a["hash"]) == min(k, sum(sizes))
    assert np.all(np.diff(a["hash"].astype(np.float64)) >= 0)  # the k smallest, in order


def test_a_part_offers_its_rows_with_the_smallest_hashes_and_parts_are_sampled_evenly():
    """Rows are chosen by a hash of (part, row), so a part's share of the guide follows its
    size, and a part offers the same rows whatever else is in the job."""
    sizes = [40_000, 10_000, 30_000, 20_000]
    parts = offers(sizes, cap=ranks.GUIDE_KEYS)
    again = offers(sizes[:1], cap=ranks.GUIDE_KEYS)
    assert same(parts[0], again[0])
    guide = combine(GuideCombineFn(), [parts])
    share = np.array([(guide["part"] == parts[i]["part"][0]).sum() for i in range(4)])
    want = ranks.GUIDE_KEYS * np.array(sizes) / sum(sizes)
    assert np.all(np.abs(share - want) < 5 * np.sqrt(want))  # within 5 sigma


def test_guide_keys_are_the_finite_sampled_values_and_an_unsampled_column_has_none():
    guide = combine(GuideCombineFn(100), [offers([500], cap=100)])
    guide["columns"]["x"][:3] = [np.nan, np.inf, -np.inf]
    keys = guide_keys(guide, "x")
    assert len(keys) == 97 and np.all(np.diff(keys.astype(np.float64)) > 0)
    assert guide_keys(guide, "centroid_distance") is None


def test_an_empty_part_offers_nothing_and_the_empty_guide_is_no_guide():
    fn = GuideCombineFn()
    empty = fn.extract_output(fn.add_input(fn.create_accumulator(), part_offer("k", {"x": []}, 5)))
    assert len(empty["hash"]) == 0
    assert guide_keys(empty, "x") is None or len(guide_keys(empty, "x")) == 0
    assert ranks.RankSketch(0.001, guide_keys(empty, "x")).guide_keys == 0
