"""Percentile ranks: the rank sketch vs DDSketch vs exact ranks, side by side in one run.

Usage: .venv/bin/python benchmarks/ranks.py [--n 1000000] [--workers 2] [--eps 0.001]
       .venv/bin/python benchmarks/ranks.py --sizes [--ns 1e4,1e5,1e6,1e7] [--eps 0.001]

For each test distribution, ``n`` values split over ``workers`` parts (as the job's workers
see them). Three ways to give every value its percentile rank:

- exact: numpy sort of all values in one place, mid-rank ``(less + equal / 2) / n``;
- rank sketch (``pipelines.stats.ranks.RankSketch``): every pass as the job runs it (each part
  counted, counts summed), then ``rank``; unguided, and guided as the job runs it (each part
  offers rows to the rank guide's bottom-k combiner, ``pipelines.job.rank_guide``, whose 16,384
  keys cut pass 0; the guide's time is included);
- DDSketch (``pipelines.stats.sketch.QuantileSketch``, alpha 0.005, what the job used before).

Reported per distribution: max and mean absolute rank error against exact, distinct ranks,
passes, bytes per worker (the largest sparse histogram one worker sends in any pass: 8-byte
key + 8-byte count per bucket), and seconds (build + rank of all values) with the ratio to
the exact sort.

``--sizes``: the rank sketch's memory against the number of values, per distribution: the
sketch's bytes after the last pass and its most intervals after any pass (the side input
every worker holds), and the most sparse entries one part sent and the combiner's summed
counts held in any pass (the accumulator), with the bounds ``ranks.sketch_bound(eps)`` and
``ranks.budget(eps)`` they must stay under whatever n.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.stats.ranks import (  # noqa: E402
    GUIDE_KEYS,
    RankSketch,
    budget,
    merge_counts,
    passes,
    sketch_bound,
)
from pipelines.stats.sketch import QuantileSketch  # noqa: E402

KINDS = {
    "narrow (0.90-0.99 uniform)": lambda r, n: r.uniform(0.90, 0.99, n),
    "heavy tail (Pareto 1.1)": lambda r, n: r.pareto(1.1, n),
    "bimodal (N(-5, 0.01) + N(7, 3))": lambda r, n: np.where(
        r.random(n) < 0.5, r.normal(-5, 0.01, n), r.normal(7, 3, n)
    ),
    "all ties": lambda r, n: np.full(n, 0.35),
    "7 distinct values": lambda r, n: r.integers(-3, 4, n).astype(np.float64),
    "1% NaN (normal)": lambda r, n: np.where(r.random(n) < 0.01, np.nan, r.normal(0, 1, n)),
    "negative (-lognormal(0, 2))": lambda r, n: -r.lognormal(0, 2, n),
    "float32 grid (normal)": lambda r, n: r.normal(3, 0.2, n).astype(np.float32).astype(float),
}


def exact(v: np.ndarray) -> np.ndarray:
    finite = np.isfinite(v)
    s = np.sort(v[finite])
    out = np.full(v.shape, np.nan)
    lo = np.searchsorted(s, v[finite], "left")
    hi = np.searchsorted(s, v[finite], "right")
    out[finite] = (lo + hi) / 2 / len(s)
    return out


def guide(parts: list[np.ndarray]) -> np.ndarray | None:
    """The rank guide the job would build from these parts (one column, ``v``)."""
    from pipelines.job.rank_guide import GuideCombineFn, guide_keys, part_offer
    from pipelines.job.samples import part_cap

    fn, n = GuideCombineFn(), sum(len(p) for p in parts)
    accs = [
        fn.add_input(fn.create_accumulator(), part_offer(f"{k:06d}", {"v": p}, cap))
        for k, p in enumerate(parts)
        if (cap := part_cap(GUIDE_KEYS, len(p), n, False))
    ]
    return guide_keys(fn.extract_output(fn.merge_accumulators(accs)), "v")


def rank_sketch(
    parts: list[np.ndarray], eps: float, guided: bool = False
) -> tuple[np.ndarray, int, int]:
    sketch = RankSketch(eps, guide(parts) if guided else None)
    worst = 0
    for _ in range(passes(eps)):
        counts = [sketch.level_counts(p) for p in parts]
        worst = max([worst] + [sum(x.nbytes for x in c) for c in counts])
        sketch = sketch.add_level(merge_counts(counts))
    return np.concatenate([sketch.rank(p) for p in parts]), worst, sketch.passes


def sketch_bytes(sketch: RankSketch) -> int:
    return sketch.lo.nbytes + sketch.hi.nbytes + sketch.cum.nbytes


def sizes(ns: list[int], workers: int, eps: float) -> None:
    print(
        f"eps = {eps}, {workers} parts; bounds: sketch <= {sketch_bound(eps):,} intervals "
        f"({24 * sketch_bound(eps) + 8:,} bytes), a pass's counts <= {budget(eps):,} entries "
        f"({16 * budget(eps):,} bytes), {passes(eps)} passes\n"
    )
    print(
        "| distribution | n | passes used | sketch intervals (most) | sketch bytes "
        "| entries / part (most) | accumulator entries (most) | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in ns:
        for i, (name, make) in enumerate(KINDS.items()):
            v = make(np.random.default_rng(i), n)
            t0 = time.perf_counter()
            sketch, held, sent, summed = RankSketch(eps), 0, 0, 0
            for _ in range(passes(eps)):  # a complete sketch's passes are no-ops: not counted
                counts = [sketch.level_counts(p) for p in np.array_split(v, workers)]
                sent = max([sent] + [len(c[0]) for c in counts])
                total = merge_counts(counts)
                summed = max(summed, len(total[0]))
                sketch = sketch.add_level(total)
                held = max(held, len(sketch.lo))
            print(
                f"| {name} | {n:,} | {sketch.passes} | {held:,} | {sketch_bytes(sketch):,} | {sent:,} "
                f"| {summed:,} | {time.perf_counter() - t0:.2f} |",
                flush=True,
            )
            del v


def ddsketch(parts: list[np.ndarray]) -> tuple[np.ndarray, int]:
    sketches = [QuantileSketch().add(p) for p in parts]
    size = max(16 * len(s.counts) for s in sketches)
    merged = sketches[0]
    for s in sketches[1:]:
        merged = merged.merge(s)
    return np.concatenate([merged.rank(p) for p in parts]), size


def err(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    d = np.abs(got - want)
    return float(np.nanmax(d)), float(np.nanmean(d))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--eps", type=float, default=0.001)
    ap.add_argument("--sizes", action="store_true", help="memory against n (see above)")
    ap.add_argument("--ns", default="1e4,1e5,1e6,1e7", help="with --sizes: values per signal")
    a = ap.parse_args()
    print(
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, python "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    print(f"- command: {' '.join(sys.argv)}; load average {os.getloadavg()[0]:.1f}\n")
    if a.sizes:
        sizes([int(float(x)) for x in a.ns.split(",")], a.workers, a.eps)
        return
    print(f"n = {a.n:,} values over {a.workers} workers, eps = {a.eps}\n")
    print(
        "| distribution | method | max rank error | mean rank error | distinct ranks "
        "| passes | bytes / worker | seconds | time vs exact |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, (name, make) in enumerate(KINDS.items()):
        v = make(np.random.default_rng(i), a.n)
        parts = np.array_split(v, a.workers)
        t0 = time.perf_counter()
        want = exact(v)
        t_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        got, size, passes = rank_sketch(parts, a.eps)
        t_rs = time.perf_counter() - t0
        t0 = time.perf_counter()
        got_g, size_g, passes_g = rank_sketch(parts, a.eps, guided=True)
        t_g = time.perf_counter() - t0
        t0 = time.perf_counter()
        dd, dd_size = ddsketch(parts)
        t_dd = time.perf_counter() - t0
        distinct = len(np.unique(want[np.isfinite(want)]))
        rows = [
            ("exact (numpy sort)", want, "-", distinct, f"{8 * a.n // a.workers:,}", t_exact),
            ("rank sketch", got, passes, None, f"{size:,}", t_rs),
            ("rank sketch, guided", got_g, passes_g, None, f"{size_g:,}", t_g),
            ("DDSketch a=0.005", dd, 1, None, f"{dd_size:,}", t_dd),
        ]
        for method, r, p, d, b, t in rows:
            mx, mean = err(r, want)
            d = d if d is not None else len(np.unique(r[np.isfinite(r)]))
            print(
                f"| {name} | {method} | {mx:.5f} | {mean:.6f} | {d:,} | {p} | {b} "
                f"| {t:.2f} | {t / t_exact:.1f}x |"
            )


if __name__ == "__main__":
    main()
