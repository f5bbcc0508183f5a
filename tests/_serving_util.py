"""Helpers for the serving tests (not collected): small indexed datasets and uploads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from shards import write_dataset


def table(n: int, seed: int = 0, text: int = 600, clusters: int = 8) -> pa.Table:
    """``n`` rows with the DESIGN schema: id, text of about ``text`` bytes, two signals,
    cluster, difficulty (a few NaN), bucket."""
    rs = np.random.default_rng(seed)
    diff = rs.random(n).astype(np.float32)
    diff[rs.random(n) < 0.02] = np.nan
    lengths = rs.integers(text // 2, text * 3 // 2, n)
    return pa.table(
        {
            "id": [f"doc-{seed}-{i:07d}" for i in range(n)],
            "text": pa.array(["w" * int(k) for k in lengths], pa.large_string()),
            "readability": rs.random(n).astype(np.float32),
            "compression_ratio": rs.random(n).astype(np.float32),
            "cluster": rs.integers(0, clusters, n).astype(np.int32),
            "difficulty": diff,
            "bucket": np.nan_to_num(diff * 10, nan=10).astype(np.int16),
        }
    )


def dataset(path: Path, n: int = 4000, rows: int = 250, seed: int = 0, **kw) -> Path:
    """Write an indexed dataset of ``n`` rows in shards of ``rows``; return its path."""
    write_dataset(path, table(n, seed), max_rows=rows, **kw)
    return path


def upload(store, local: Path, prefix: str) -> str:
    """Put every file of ``local`` under ``prefix`` of ``store``; return the dataset's URL."""
    for root, _, names in os.walk(local):
        for name in names:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, local).replace(os.sep, "/")
            with open(full, "rb") as fh:
                store.put(f"{prefix}/{rel}", fh.read())
    return store.url(prefix)


def cached_files(cache: Path) -> list[Path]:
    """Shard files (not stamps, locks or temporaries) in a cache directory."""
    return sorted(p for p in Path(cache).rglob("*.arrow") if not p.name.startswith("."))


def shard_bytes(manifest: dict) -> int:
    return sum(int(s["bytes"]) for s in manifest["shards"])


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """The same rows in the same order (ids and texts; NaN difficulties compare unequal in
    ``Table.equals``)."""
    return a.schema == b.schema and all(a.column(c).equals(b.column(c)) for c in ("id", "text"))
