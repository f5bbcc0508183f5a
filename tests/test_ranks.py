"""Rank sketches: every record's percentile rank within eps of its exact mid-rank, whatever
the distribution, and the same whatever the split and merge order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.stats.ranks import LEVEL_BITS, RankSketch, merge_counts

EPS = 0.001


def exact_midranks(v: np.ndarray) -> np.ndarray:
    finite = np.isfinite(v)
    s = np.sort(v[finite])
    out = np.full(v.shape, np.nan)
    lo = np.searchsorted(s, v[finite], "left")
    hi = np.searchsorted(s, v[finite], "right")
    out[finite] = (lo + hi) / 2 / len(s)
    return out


def build(parts: list[np.ndarray], eps: float = EPS) -> RankSketch:
    """Every pass, as the job runs them (later passes are no-ops once no bucket is heavy)."""
    sketch = RankSketch(eps)
    for _ in LEVEL_BITS:
        sketch = sketch.add_level(merge_counts([sketch.level_counts(p) for p in parts]))
    assert sketch.complete
    return sketch


def distribution(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "narrow":  # angle concentration spread over 0.90-0.99
        return rng.uniform(0.90, 0.99, n)
    if kind == "heavy_tail":
        return rng.pareto(1.1, n)
    if kind == "bimodal":
        return np.where(rng.random(n) < 0.5, rng.normal(-5, 0.01, n), rng.normal(7, 3, n))
    if kind == "all_ties":
        return np.full(n, 0.35)
    if kind == "few_values":
        return rng.integers(-3, 4, n).astype(np.float64)
    if kind == "nan_1pct":
        v = rng.normal(0, 1, n)
        v[rng.random(n) < 0.01] = np.nan
        return v
    if kind == "negative":
        return -rng.lognormal(0, 2, n)
    if kind == "float32_grid":  # signals stored as float32: many exact repeats
        return rng.normal(3, 0.2, n).astype(np.float32).astype(np.float64)
    raise ValueError(kind)


KINDS = [
    "narrow",
    "heavy_tail",
    "bimodal",
    "all_ties",
    "few_values",
    "nan_1pct",
    "negative",
    "float32_grid",
]


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(min_value=100_000, max_value=1_000_000),
    parts=st.integers(min_value=1, max_value=9),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_every_rank_is_within_eps_of_the_exact_mid_rank(kind, n, parts, seed):
    rng = np.random.default_rng(seed)
    v = distribution(kind, n, rng)
    sketch = build(np.array_split(v, parts))
    got, want = sketch.rank(v), exact_midranks(v)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.nanmax(np.abs(got - want)) <= EPS + 1e-12
    assert len(sketch.levels) <= len(LEVEL_BITS)


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.sampled_from([0.0, -0.0, 1.0, -1.0]),
        ),
        min_size=1,
        max_size=400,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    eps=st.sampled_from([0.001, 0.01, 0.2]),
)
def test_the_sketch_does_not_depend_on_the_split_or_merge_order(values, cuts, eps):
    v = np.array(values, dtype=np.float64)
    bounds = sorted({min(c, len(v)) for c in cuts})
    parts = np.split(v, bounds)
    a = build(parts, eps)
    b = build(parts[::-1], eps)
    c = build([v], eps)
    for x, y, z in zip(a.levels, b.levels, c.levels, strict=True):
        for i in range(3):
            assert np.array_equal(x[i], y[i]) and np.array_equal(x[i], z[i])
    ranks = a.rank(v)
    assert np.array_equal(ranks, c.rank(v), equal_nan=True)
    if np.isfinite(v).any():
        want = exact_midranks(v)
        assert np.nanmax(np.abs(ranks - want)) <= eps + 1e-12


def test_zero_signs_tie_and_values_outside_the_data_rank_between_neighbours():
    v = np.array([-0.0, 0.0, 1.0, 2.0, 3.0])
    sketch = build([v])
    assert sketch.rank(np.array([-0.0]))[0] == sketch.rank(np.array([0.0]))[0] == 0.2
    between = sketch.rank(np.array([1.5, -10.0, 10.0]))
    assert between.tolist() == [0.6, 0.0, 1.0]


def test_adding_a_level_never_changes_the_sketch_it_is_added_to():
    """Beam side inputs are immutable: the rank passes build a new sketch each level (a
    bundle retried in the same process would otherwise append a level twice)."""
    values = np.repeat(np.arange(50, dtype=np.float64), 40)
    first = RankSketch(0.001)
    first_levels = first.levels
    second = first.add_level(merge_counts([first.level_counts(values)]))
    assert first.levels is first_levels and first.levels == [] and first.n == 0
    third = second.add_level(merge_counts([second.level_counts(values)]))
    assert len(second.levels) == 1 and len(third.levels) in (1, 2)
    again = second.add_level(merge_counts([second.level_counts(values)]))
    assert len(again.levels) == len(third.levels)  # a retried pass gives the same sketch
