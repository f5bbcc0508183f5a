"""Columns over a whole dataset from its index (``index/part-KEY.parquet``, one per shard,
row-aligned with it): what a Sampler needs, without reading a shard.

One column of N rows is read into one preallocated numpy array, part by part, in a pool of
threads: the peak memory is the array plus one part per thread (no second copy of the
column, no list of chunks to concatenate). On an object store each part costs two or three
ranged requests (the footer, then only the column's chunk).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ShardMismatchError, ShardsError

Opener = Callable[[], Any]  # returns a path or a file object for pyarrow.parquet
THREADS = 16


def has_index(manifest: dict[str, Any]) -> bool:
    """Every shard of the manifest lists its index part."""
    shards = manifest.get("shards") or []
    return bool(shards) and all(isinstance(s.get("index"), dict) for s in shards)


def index_schema(open_part: Opener) -> pa.Schema:
    """The Arrow schema of an index part (its footer only)."""
    import pyarrow.parquet as pq

    with _opened(open_part()) as src:
        return pq.ParquetFile(src).schema_arrow


def numpy_dtype(field: pa.Field) -> np.dtype:
    """The numpy dtype a column of ``field`` comes back as (strings: object)."""
    t = field.type
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
        return np.dtype(t.to_pandas_dtype())
    return np.dtype(object)


def read_column(
    parts: Sequence[tuple[Opener, int]], name: str, dtype: np.dtype, threads: int = THREADS
) -> np.ndarray:
    """Column ``name`` of every part, in order, as one array of ``dtype`` (``parts``: how to
    open each part and the rows its shard holds). Nulls: NaN in float columns; an integer
    column with nulls comes back as float64 with NaN.

    Raises:
        ShardMismatchError: a part's row count differs from its shard's.
        ShardsError: a part is missing or unreadable.
    """
    rows = np.fromiter((r for _, r in parts), dtype=np.int64, count=len(parts))
    offsets = np.concatenate(([0], np.cumsum(rows)))
    out = np.empty(int(offsets[-1]), dtype=dtype)
    late: dict[int, np.ndarray] = {}  # integer parts with nulls (as float64)
    lock = threading.Lock()

    def one(k: int) -> None:
        import pyarrow.parquet as pq

        opener, n = parts[k]
        try:
            with _opened(opener()) as src:
                col = pq.ParquetFile(src).read(columns=[name]).column(0)
        except (OSError, pa.ArrowInvalid) as e:
            raise ShardsError(f"index part {k}: unreadable: {e}") from e
        if len(col) != n:
            raise ShardMismatchError(
                f"index part {k}: has {len(col)} rows, its shard has {n}: the index is stale"
            )
        values = col.to_numpy()  # nulls: NaN (floats, and integers as float64)
        if col.null_count and out.dtype.kind in "iub":
            with lock:
                late[k] = np.asarray(values, dtype=np.float64)
            return
        out[offsets[k] : offsets[k + 1]] = values

    workers = max(1, min(threads, len(parts)))
    if workers == 1:
        for k in range(len(parts)):
            one(k)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="gradum-index") as pool:
            for f in [pool.submit(one, k) for k in range(len(parts))]:
                f.result()
    if late:
        out = out.astype(np.float64)
        for k, values in late.items():
            out[offsets[k] : offsets[k + 1]] = values
    return out


class _opened:
    """Close a file object after use; leave paths alone."""

    def __init__(self, src: Any) -> None:
        self.src = src

    def __enter__(self) -> Any:
        return self.src

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.src, "close", None)
        if close is not None and not isinstance(self.src, str):
            close()
