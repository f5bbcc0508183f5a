"""Rank sketches: every record's percentile rank within eps of its exact mid-rank, whatever
the distribution, the same whatever the split and merge order, and in memory bounded by eps
alone (the sketch and every pass's counts), whatever the number of values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.stats.ranks import (
    GUIDE_KEYS,
    RankSketch,
    budget,
    merge_counts,
    order_keys,
    passes,
    sketch_bound,
)

EPS = 0.001


def exact_midranks(v: np.ndarray) -> np.ndarray:
    finite = np.isfinite(v)
    s = np.sort(v[finite])
    out = np.full(v.shape, np.nan)
    lo = np.searchsorted(s, v[finite], "left")
    hi = np.searchsorted(s, v[finite], "right")
    out[finite] = (lo + hi) / 2 / len(s)
    return out


def build(parts: list[np.ndarray], eps: float = EPS, guide=None) -> RankSketch:
    """Every pass, as the job runs them (later passes are no-ops once no bucket is heavy)."""
    sketch = RankSketch(eps, guide)
    for _ in range(passes(eps)):
        sketch = sketch.add_level(merge_counts([sketch.level_counts(p) for p in parts]))
    assert sketch.complete
    return sketch


def same(a: RankSketch, b: RankSketch) -> bool:
    return (
        a.n == b.n
        and a.passes == b.passes
        and all(np.array_equal(x, y) for x, y in ((a.lo, b.lo), (a.hi, b.hi), (a.cum, b.cum)))
    )


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
    assert sketch.passes <= passes(EPS) and len(sketch.lo) <= sketch_bound(EPS)


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
    assert same(a, b) and same(a, c)
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
    first_lo, first_cum = first.lo, first.cum
    second = first.add_level(merge_counts([first.level_counts(values)]))
    assert first.lo is first_lo and first.cum is first_cum and first.n == first.passes == 0
    second_lo, second_cum = second.lo.copy(), second.cum.copy()
    third = second.add_level(merge_counts([second.level_counts(values)]))
    assert np.array_equal(second.lo, second_lo) and np.array_equal(second.cum, second_cum)
    assert second.passes == 1 and third.passes in (1, 2)
    again = second.add_level(merge_counts([second.level_counts(values)]))
    assert same(again, third)  # a retried pass gives the same sketch


MIXTURE = ["ties", "lognormal", "negative", "narrow", "pareto"]


def mixture(n: int, weights: list[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(MIXTURE), size=n, p=np.asarray(weights) / np.sum(weights))
    out = np.empty(n)
    for k, name in enumerate(MIXTURE):
        m = int((kinds == k).sum())
        if name == "ties":  # a few values repeated many times, some of them neighbours
            grid = rng.normal(0, 3, 4)
            grid = np.concatenate([grid, np.nextafter(grid, np.inf)])
            out[kinds == k] = rng.choice(grid, m)
        elif name == "lognormal":
            out[kinds == k] = rng.lognormal(rng.normal(0, 3), rng.uniform(0.01, 3), m)
        elif name == "negative":
            out[kinds == k] = -rng.lognormal(rng.normal(0, 3), rng.uniform(0.01, 3), m)
        elif name == "narrow":
            c = rng.normal(0, 10)
            out[kinds == k] = c + rng.uniform(0, 1e-9 * max(abs(c), 1), m)
        else:
            out[kinds == k] = rng.pareto(rng.uniform(0.5, 3), m)
    return out


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(min_value=2_000, max_value=200_000),
    weights=st.lists(st.floats(0.0, 1.0), min_size=len(MIXTURE), max_size=len(MIXTURE)).filter(
        lambda w: sum(w) > 0.05
    ),
    parts=st.integers(min_value=1, max_value=7),
    eps=st.sampled_from([0.001, 0.004, 0.05]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_mixtures_of_ties_tails_and_negatives_rank_within_eps_in_any_merge_order(
    n, weights, parts, eps, seed
):
    v = mixture(n, weights, seed)
    split = np.array_split(v, parts)
    a, b = build(split, eps), build(split[::-1], eps)
    assert same(a, b) and same(a, build([v], eps))
    got = a.rank(v)
    assert np.abs(got - exact_midranks(v)).max() <= eps + 1e-12
    order = np.argsort(v, kind="stable")
    assert np.all(np.diff(got[order]) >= 0)  # monotone in the value
    assert len(a.lo) <= sketch_bound(eps)


def pass_sizes(v: np.ndarray, eps: float, parts: int = 4) -> tuple[int, int, int]:
    """(most intervals a sketch held after any pass, most entries in one part's counts, most
    entries in a pass's summed counts) over every pass."""
    sketch, held, sent, summed = RankSketch(eps), 0, 0, 0
    for _ in range(passes(eps)):
        counts = [sketch.level_counts(p) for p in np.array_split(v, parts)]
        total = merge_counts(counts)
        sent = max([sent] + [len(c[0]) for c in counts])
        summed = max(summed, len(total[0]))
        sketch = sketch.add_level(total)
        held = max(held, len(sketch.lo))
    assert sketch.complete
    return held, sent, summed


@pytest.mark.parametrize("eps", [0.001, 0.01])
def test_the_sketch_and_every_pass_are_bounded_by_eps_alone_at_1e4_and_1e6_values(eps):
    """The sketch every worker holds has at most 2 / eps + 1 intervals and a pass's counts at
    most max(65,536, 256 floor(1 / (2 eps))) + 2 GUIDE_KEYS entries, at 1e4 values as at
    1e6."""
    rng = np.random.default_rng(7)
    for n in (10_000, 1_000_000):
        for v in (rng.lognormal(2, 1, n), rng.uniform(0.90, 0.99, n), mixture(n, [1] * 5, n)):
            held, sent, summed = pass_sizes(v, eps)
            assert held <= sketch_bound(eps) == 2 * int(np.ceil(1 / eps)) + 1
            assert sent <= summed <= budget(eps)
            assert budget(eps) == max(65_536, 256 * int(1 / (2 * eps))) + 2 * GUIDE_KEYS


def ladder(clusters: int = 499, copies: int = 1300) -> np.ndarray:
    """The worst case: ``clusters`` heavy pairs of neighbouring keys ``x, x + 1``, each in a
    16-bit bucket of its own with single keys at ``x + 2^8, 2^16, 2^24, 2^32, 2^47``. A pass
    cuts each open interval into 2^8 cells from its least key, so the cell holding the pair
    also holds the next rung down: 7 passes, the last one exact."""
    rungs = np.array([2**8, 2**16, 2**24, 2**32, 2**47], np.uint64)
    starts = (np.arange(clusters, dtype=np.uint64) + np.uint64(0x8100)) << np.uint64(48)
    pair = np.repeat(np.stack([starts, starts + np.uint64(1)], axis=1), copies, axis=1)
    keys = np.concatenate([pair.ravel(), (starts[:, None] + rungs).ravel()])
    return (keys ^ np.uint64(1 << 63)).view(np.float64)  # keys with the sign bit: positive


def test_the_worst_case_needs_every_pass_and_stays_exact():
    v = ladder()
    assert np.array_equal(np.sort(order_keys(v)), np.sort(v.view(np.uint64) | np.uint64(1 << 63)))
    assert passes(EPS) == 7
    sketch = RankSketch(EPS)
    for _ in range(passes(EPS)):
        assert not sketch.complete
        counts = merge_counts([sketch.level_counts(p) for p in np.array_split(v, 3)])
        assert len(counts[0]) <= budget(EPS)
        sketch = sketch.add_level(counts)
        assert len(sketch.lo) <= sketch_bound(EPS)
    assert sketch.complete
    assert np.abs(sketch.rank(v) - exact_midranks(v)).max() <= EPS + 1e-12


def test_the_combiner_accumulator_is_bounded_and_order_free():
    """_SumCounts holds one histogram per signal, within budget(eps), however many parts it
    adds or accumulators it merges, and sums to the same counts in any order."""
    from pipelines.job.signal_stats import _SumCounts

    rng = np.random.default_rng(3)
    cols = {"wide": rng.lognormal(0, 2, 400_000), "narrow": rng.uniform(0.9, 0.99, 400_000)}
    fn = _SumCounts(list(cols))
    sketches = {c: RankSketch(EPS) for c in cols}
    for _ in range(3):
        chunks = {c: np.array_split(v, 40) for c, v in cols.items()}
        inputs = [{c: sketches[c].level_counts(chunks[c][i]) for c in cols} for i in range(40)]
        accs, biggest = [], 0
        for group in (inputs[:13], inputs[13:29], inputs[29:]):
            acc = fn.create_accumulator()
            for x in group:
                acc = fn.add_input(acc, x)
                biggest = max([biggest] + [len(acc[c][0]) for c in cols])
            accs.append(acc)
        out = fn.extract_output(fn.merge_accumulators(iter(accs)))
        back = fn.extract_output(fn.merge_accumulators(iter(accs[::-1])))
        biggest = max([biggest] + [len(out[c][0]) for c in cols])
        assert biggest <= budget(EPS)
        for c in cols:
            assert np.array_equal(out[c][0], back[c][0]) and np.array_equal(out[c][1], back[c][1])
            s = sketches[c]  # pass 0 counts every value; a later one those in open buckets
            want = len(cols[c]) if not s.passes else (s.counts * (s.counts > s.max_bucket)).sum()
            assert out[c][1].sum() == want
        sketches = {c: sketches[c].add_level(out[c]) for c in cols}


def _passes_as_the_job_runs(parts: list[np.ndarray], eps: float = EPS):
    """Every pass as ``pipelines.job.signal_stats`` chains them: pass 0 reads the values, each
    later pass only the keys the one before counted (those inside its sketch's open
    intervals). Returns the sketch, how many keys each pass read, and after how many passes
    the sketch was complete."""
    from pipelines.stats.ranks import order_keys

    sketch = RankSketch(eps)
    inputs = [order_keys(p[np.isfinite(p)]) for p in parts]
    read, done = [], None
    for level in range(passes(eps)):
        read.append(sum(len(k) for k in inputs))
        inputs = [sketch.open_keys(k) for k in inputs]
        sketch = sketch.add_level(merge_counts([sketch.count_keys(k) for k in inputs]))
        done = level + 1 if done is None and sketch.complete else done
    return sketch, read, done


@pytest.mark.parametrize("kind", ["narrow", "heavy_tail", "bimodal", "few_values", "nan_1pct"])
def test_passes_fed_only_the_open_keys_make_the_same_sketch(kind):
    """Handing each pass only the keys the previous one left open changes nothing: the same
    sketch as every pass reading every value, and each pass reads no more than the one
    before."""
    v = distribution(kind, 60_000, np.random.default_rng(11))
    parts = np.array_split(v, 7)
    chained, read, _ = _passes_as_the_job_runs(parts)
    assert same(chained, build(parts))
    assert all(a >= b for a, b in zip(read, read[1:], strict=False))


def test_integer_values_complete_in_two_passes_and_passes_after_the_third_read_nothing():
    """Counts of characters or words: a heavy bucket holding one distinct value is exact as
    soon as it is counted (the interval's least and greatest keys are equal), so the sketch
    is complete after two passes, and passes 3-6 read no key (pass 2 reads what pass 1
    counted, to find it closed)."""
    rng = np.random.default_rng(5)
    v = np.round(rng.lognormal(6, 0.6, 200_000))
    sketch, read, done = _passes_as_the_job_runs(np.array_split(v, 5))
    assert done == 2
    assert read[:2] == [len(v), len(v)] and read[3:] == [0] * (passes(EPS) - 3)
    assert np.abs(sketch.rank(v) - exact_midranks(v)).max() <= EPS + 1e-12


def test_an_interval_spans_only_the_keys_it_counted():
    """lo and hi are the least and greatest key counted, so a value's rank interpolates
    between real values, not a bucket's bounds; every interval holds its own lo and hi."""
    v = np.random.default_rng(2).uniform(0.90, 0.99, 50_000)
    sketch = build(np.array_split(v, 4))
    from pipelines.stats.ranks import order_keys

    keys = np.sort(order_keys(v))
    assert sketch.lo[0] == keys[0] and sketch.hi[-1] == keys[-1]
    assert np.all(np.isin(sketch.lo, keys)) and np.all(np.isin(sketch.hi, keys))


@pytest.mark.parametrize("kind", ["few_values", "bimodal"])
def test_the_job_s_passes_make_the_sketch_of_every_pass_over_every_value(kind, tmp_path):
    """pipelines.job.signal_stats.RankSketches on Beam: passes fed the parts' kept objects and
    then only the open keys (and passes left with nothing to read once the sketch is
    complete) give the sketch of every pass over every value."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from pipelines.job.kept import write_kept
    from pipelines.job.signal_stats import RankSketches

    v = distribution(kind, 6_000, np.random.default_rng(4))
    parts = np.array_split(v, 5)
    want = build(parts)
    refs = [
        {"kept": write_kept(str(tmp_path), f"{i}", {"x": part})} for i, part in enumerate(parts)
    ]
    with beam.Pipeline() as p:
        rs = RankSketches(p | beam.Create(refs), "RS", ["x"], EPS)
        same_sketch = (
            p
            | "One" >> beam.Create([0])
            | beam.Map(lambda _, s: (s["x"].passes, same(s["x"], want)), rs.side())
        )
        assert_that(same_sketch, equal_to([(want.passes, True)]))


def test_a_pass_after_the_sketch_is_complete_reads_no_kept_object(tmp_path):
    """Pass 1 reads a part's kept object only while a sketch has an open interval: once every
    sketch is complete it counts nothing and opens nothing (here the object is gone, so a
    read would raise); while one is open it reads the object and counts its keys."""
    from pipelines.job.kept import write_kept
    from pipelines.job.signal_stats import _LevelCounts

    v = distribution("bimodal", 2_000, np.random.default_rng(5))
    ref = write_kept(str(tmp_path), "p", {"x": v})
    first = RankSketch(EPS).add_level(RankSketch(EPS).level_counts(v))
    assert not first.complete  # 16-bit buckets alone leave this one open after pass 0
    pass1 = _LevelCounts(["x"], EPS, from_columns=True, rest=True)
    counts, rest = list(pass1.process({"kept": ref}, {"x": first}))
    assert len(counts["x"][0]) and len(rest.value["x"])
    done = first
    while not done.complete:
        done = done.add_level(done.level_counts(v))
    Path(ref["path"]).unlink()
    (counts,) = list(pass1.process({"kept": ref}, {"x": done}))
    assert all(len(a) == 0 for a in counts["x"])


def sample_guide(v: np.ndarray, k: int, seed: int) -> np.ndarray:
    finite = v[np.isfinite(v)]
    pick = np.random.default_rng(seed).choice(len(finite), min(k, len(finite)), replace=False)
    return order_keys(finite[pick])


@pytest.mark.parametrize("kind", ["narrow", "heavy_tail", "negative", "nan_1pct"])
def test_a_guide_from_a_sample_finishes_continuous_values_in_one_pass(kind):
    """Pass 0 cut at GUIDE_KEYS sampled keys (each and the key after it) leaves cells of about
    n / GUIDE_KEYS values, far under 2 eps n: the sketch is complete after pass 0, where the
    16-bit buckets alone need two passes or more; the ranks are as good."""
    v = distribution(kind, 1_000_000, np.random.default_rng(8))
    parts = np.array_split(v, 6)
    guided = build(parts, guide=sample_guide(v, GUIDE_KEYS, 1))
    plain = build(parts)
    assert guided.passes == 1 < plain.passes
    got, want = guided.rank(v), exact_midranks(v)
    assert np.nanmax(np.abs(got - want)) <= EPS + 1e-12
    assert len(guided.lo) <= sketch_bound(EPS)


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    guide=st.sampled_from(["sample", "other", "ties", "extremes", "none"]),
    parts=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_any_guide_keeps_every_rank_within_eps_and_the_sketch_order_free(kind, guide, parts, seed):
    """The guide only says where pass 0 cuts: a sample of other values, a guide of ties, the
    extremes of the key space or none at all still give ranks within eps, in at most
    passes(eps) passes, the same sketch for any split and merge order."""
    rng = np.random.default_rng(seed)
    v = distribution(kind, 50_000, rng)
    keys = {
        "sample": lambda: sample_guide(v, 500, seed),
        "other": lambda: order_keys(rng.normal(0, 1, GUIDE_KEYS)),
        "ties": lambda: order_keys(np.full(10, 0.35)),
        "extremes": lambda: np.array([0, 1, 2**63, 2**64 - 2, 2**64 - 1], np.uint64),
        "none": lambda: None,
    }[guide]()
    split = np.array_split(v, parts)
    a = build(split, guide=keys)
    assert same(a, build(split[::-1], guide=keys)) and same(a, build([v], guide=keys))
    got = a.rank(v)
    assert np.array_equal(np.isnan(got), np.isnan(v))
    assert np.nanmax(np.abs(got - exact_midranks(v))) <= EPS + 1e-12
    assert a.passes <= passes(EPS) and len(a.lo) <= sketch_bound(EPS)


def test_a_guide_is_bounded_and_its_pass_0_counts_stay_within_budget():
    with pytest.raises(ValueError, match="at most"):
        RankSketch(EPS, np.arange(GUIDE_KEYS + 1, dtype=np.uint64))
    v = np.random.default_rng(9).lognormal(0, 3, 300_000)
    sketch = RankSketch(EPS, sample_guide(v, GUIDE_KEYS, 2))
    counts = sketch.level_counts(v)
    assert len(counts[0]) <= budget(EPS)
    bad = (counts[0] + np.uint64(1 << 31), *counts[1:])  # a cell no guide has
    with pytest.raises(ValueError, match="cell"):
        sketch.add_level(bad)
