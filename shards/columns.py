"""Columns over a whole dataset from its index (``index/part-KEY.parquet``, one per shard,
row-aligned with it): what a Sampler needs, without reading a shard.

One column of N rows is read into one preallocated numpy array, part by part, in a pool of
threads: the peak memory is the array plus the parts in flight (at most 16, and at most about
N / 8 rows together), with no second copy of the column and no list of chunks to concatenate. On an object store a part's footer costs two
ranged requests of its exact size (the 8-byte tail, then the footer: Parquet readers guess
64 KiB, more than a small part holds), read once per ShardSet and kept (``Footers``); then
each column costs one ranged request for its chunk.
"""

from __future__ import annotations

import struct
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


class Footers:
    """The Parquet footer of each index part, read once (exact ranged reads) and kept."""

    def __init__(self) -> None:
        self._md: dict[int, Any] = {}
        self._lock = threading.Lock()

    def get(self, k: int, src: Any) -> Any:
        """Part ``k``'s ``FileMetaData``, read from the open file object ``src`` if needed."""
        with self._lock:
            md = self._md.get(k)
        if md is None:
            import pyarrow.parquet as pq

            md = pq.read_metadata(src) if isinstance(src, str) else read_footer(src)
            with self._lock:
                self._md[k] = md
        return md


def read_footer(src: Any) -> Any:
    """A Parquet file's metadata from a seekable file object: the 8-byte tail (footer length
    and magic), then exactly the footer."""
    import pyarrow.parquet as pq

    src.seek(-8, 2)
    tail = src.read(8)
    if len(tail) != 8 or tail[4:] != b"PAR1":
        raise ShardsError("index part: not a Parquet file")
    (length,) = struct.unpack("<I", tail[:4])
    src.seek(-(8 + length), 2)
    footer = src.read(length)
    return pq.read_metadata(pa.BufferReader(b"PAR1" + footer + tail))


def index_schema(open_part: Opener, footers: Footers | None = None) -> pa.Schema:
    """The Arrow schema of index part 0 (its footer only)."""
    with _opened(open_part()) as src:
        md = (footers or Footers()).get(0, src)
    return md.schema.to_arrow_schema()


def numpy_dtype(field: pa.Field) -> np.dtype:
    """The numpy dtype a column of ``field`` comes back as (strings: object)."""
    t = field.type
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
        return np.dtype(t.to_pandas_dtype())
    return np.dtype(object)


def read_column(
    parts: Sequence[tuple[Opener, int]],
    name: str,
    dtype: np.dtype,
    threads: int = THREADS,
    footers: Footers | None = None,
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
    footers = footers if footers is not None else Footers()

    def one(k: int) -> None:
        import pyarrow.parquet as pq

        opener, n = parts[k]
        try:
            src = opener()
            if isinstance(src, str):  # a local part: pyarrow's own file, its own buffers
                md = footers.get(k, src)
                part = pq.ParquetFile(src, metadata=md)
                col = part.read(columns=[name], use_threads=False).column(0)
            else:
                with _opened(src):
                    md = footers.get(k, src)
                    col = (
                        pq.ParquetFile(src, metadata=md)
                        .read(columns=[name], use_threads=False)
                        .column(0)
                    )
        except (OSError, pa.ArrowInvalid) as e:
            raise ShardsError(f"index part {k}: unreadable: {e}") from e
        if len(col) != n:
            raise ShardMismatchError(
                f"index part {k}: has {len(col)} rows, its shard has {n}: the index is stale"
            )
        # nulls: NaN (floats, and integers as float64); one chunk: no concatenating copy
        values = (
            col.chunk(0).to_numpy(zero_copy_only=False) if col.num_chunks == 1 else col.to_numpy()
        )
        if col.null_count and out.dtype.kind in "iub":
            with lock:
                late[k] = np.asarray(values, dtype=np.float64)
            return
        out[offsets[k] : offsets[k + 1]] = values

    # parts in flight at once hold their Arrow buffers: keep them to about 1/8 of the column
    biggest = int(rows.max()) if rows.size else 1
    workers = max(1, min(threads, len(parts), int(offsets[-1]) // max(1, 8 * biggest)))
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
    # the parts' Arrow buffers went back to Arrow's allocator, which keeps freed pages: give
    # them back to the system so the column, not the column twice, is what stays resident
    pa.default_memory_pool().release_unused()
    return out


def _file(src: Any) -> Any:
    """A path opened as a binary file; a file object as it is."""
    return open(src, "rb") if isinstance(src, str) else src


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
