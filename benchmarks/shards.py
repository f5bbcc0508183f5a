"""Benchmark the shards reader against datasets.Dataset on the same files.

Usage: .venv/bin/python benchmarks/shards.py [--rows 1000000] [--shards 10] [--workdir DIR]

Measures, on a synthetic set of --rows rows (id, text ~120 chars, 4 float32 signals,
cluster, difficulty, bucket):
  1. take() of 1024 random indices vs datasets.Dataset.__getitems__ (same shard files);
  2. column() of a float32 signal over the whole set;
  3. ShardSet.open() of the same rows written as 1,000 shards.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

# This file is itself named shards.py: drop its folder from sys.path so that
# `shards` resolves to the package at the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [_ROOT] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.modules.pop("shards", None)
shards = importlib.import_module("shards")


def make_table(n: int, seed: int = 0) -> pa.Table:
    """Synthetic rows with the DESIGN.md §4 row schema."""
    rng = np.random.default_rng(seed)
    words = np.array("the quick brown fox jumps over a lazy dog while curious cats watch".split())
    text = [" ".join(words[rng.integers(0, len(words), 20)]) for _ in range(min(n, 10_000))]
    texts = pa.array([text[i % len(text)] for i in range(n)], pa.large_string())
    cols = {
        "id": pa.array([f"doc-{i:08d}" for i in range(n)]),
        "text": texts,
    }
    for s in ("compression_ratio", "lexical_diversity", "readability", "perplexity"):
        cols[s] = rng.random(n, dtype=np.float32)
    cols["cluster"] = rng.integers(0, 256, n).astype(np.int32)
    cols["difficulty"] = rng.random(n, dtype=np.float32)
    cols["bucket"] = rng.integers(0, 10, n).astype(np.int16)
    return pa.table(cols)


def timeit(fn, repeat: int) -> tuple[float, float]:
    """Median and min seconds over ``repeat`` calls (after one warm-up)."""
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=10, help="shards for the take/column set")
    ap.add_argument("--open-shards", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    import datasets

    work = Path(a.workdir or tempfile.mkdtemp(prefix="gradum-bench-"))
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"python {platform.python_version()}, pyarrow {pa.__version__}, "
        f"datasets {datasets.__version__}, numpy {np.__version__}"
    )

    t0 = time.perf_counter()
    table = make_table(a.rows)
    print(f"generated {a.rows:,} rows in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    shards.write_dataset(work / "set", table, max_rows=-(-a.rows // a.shards))
    print(f"wrote {a.shards} shards in {time.perf_counter() - t0:.1f} s")

    ss = shards.ShardSet.open(work / "set")
    hf = ss.to_hf_dataset()
    rng = np.random.default_rng(0)
    idx_sets = [rng.integers(0, a.rows, 1024) for _ in range(a.repeat + 1)]
    it = iter(idx_sets * 2)
    ours, ours_min = timeit(lambda: ss.take(next(it)), a.repeat)
    it = iter(idx_sets * 2)
    theirs, theirs_min = timeit(lambda: hf.__getitems__(next(it).tolist()), a.repeat)
    check = idx_sets[0]
    assert ss.take(check).column("id").to_pylist() == [
        r["id"] for r in hf.__getitems__(check.tolist())
    ]
    it = iter(idx_sets * 2)
    hf_arrow = hf.with_format("arrow")
    theirs_arrow, _ = timeit(lambda: hf_arrow[next(it).tolist()], a.repeat)
    print(
        f"take(1024 random) ShardSet.take         median {ours * 1e3:8.2f} ms (min {ours_min * 1e3:.2f})"
    )
    print(
        f"take(1024 random) Dataset.__getitems__  median {theirs * 1e3:8.2f} ms (min {theirs_min * 1e3:.2f})"
    )
    print(f"take(1024 random) Dataset(arrow)[list]  median {theirs_arrow * 1e3:8.2f} ms")
    print(
        f"speed-up vs __getitems__ (python fmt): {theirs / ours:.1f}x; vs arrow fmt: {theirs_arrow / ours:.1f}x"
    )

    col_t, _ = timeit(lambda: ss.column("difficulty"), 5)
    col = ss.column("difficulty")
    print(
        f"column('difficulty') float32 over {a.rows:,} rows: {col_t * 1e3:.2f} ms "
        f"(dtype {col.dtype}, {col.nbytes / 2**20:.1f} MiB)"
    )
    hf_col_t, _ = timeit(lambda: hf.with_format("numpy")["difficulty"], 2)
    print(f"Dataset.with_format('numpy')['difficulty']: {hf_col_t * 1e3:.2f} ms")

    t0 = time.perf_counter()
    shards.write_dataset(work / "many", table, max_rows=-(-a.rows // a.open_shards))
    print(f"wrote {a.open_shards} shards in {time.perf_counter() - t0:.1f} s")
    open_t, open_min = timeit(lambda: shards.ShardSet.open(work / "many"), 5)
    many = shards.ShardSet.open(work / "many")
    print(
        f"ShardSet.open of {many.num_shards} shards: median {open_t * 1e3:.1f} ms (min {open_min * 1e3:.1f})"
    )
    many_take, _ = timeit(lambda: many.take(rng.integers(0, a.rows, 1024)), 10)
    print(f"take(1024 random) over {many.num_shards} shards: median {many_take * 1e3:.2f} ms")
    val_t0 = time.perf_counter()
    problems = shards.validate(work / "set")
    print(
        f"validate({a.shards} shards, sha256 + full read): {time.perf_counter() - val_t0:.2f} s, "
        f"{len(problems)} problems"
    )
    if a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
