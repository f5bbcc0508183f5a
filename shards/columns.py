"""Columns over a whole dataset from its index (``index/part-KEY.parquet``, one per shard,
row-aligned with it): what a Sampler needs, without reading a shard.

One column of N rows is read into one preallocated numpy array, part by part (in a pool of
threads when there are many small parts), each part decoded a batch of rows at a time
straight into its slice: the peak memory is the array plus a batch and a column chunk per
part in flight, with no second copy of the column, no decoded part and no list of chunks to
concatenate; numeric values never go through pyarrow's pandas conversion (whose first use
imports pandas, ~45 MB resident). On an object store a part's footer costs two
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
from .heap import trim_heap

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


# numeric Arrow types as numpy dtypes, without pyarrow's pandas bridge (``to_pandas_dtype``
# and ``Array.to_numpy`` import pandas on first use: about 45 MB resident for the life of the
# process, more than the column itself below a few million rows)
_NUMPY = {
    pa.int8(): np.int8,
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.uint8(): np.uint8,
    pa.uint16(): np.uint16,
    pa.uint32(): np.uint32,
    pa.uint64(): np.uint64,
    pa.float16(): np.float16,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}
# rows decoded at a time, and the bytes a local part is read by: with 1e6-row parts at 1e7
# rows these gave the lowest peak of a UCB build (11.2 B/item against 11.75 with 65536 rows
# and 1 MiB, mimalloc keeping more of the larger buffers), for +0.15 s per column read
BATCH = 8192
BUFFER = 1 << 16


def numpy_dtype(field: pa.Field) -> np.dtype:
    """The numpy dtype a column of ``field`` comes back as (strings: object)."""
    t = field.type
    if t in _NUMPY:
        return np.dtype(_NUMPY[t])
    if pa.types.is_boolean(t):
        return np.dtype(bool)
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

    Each part is decoded ``BATCH`` rows at a time straight into its slice of the result
    (numeric values copied from the Arrow buffer, no intermediate array of the part): the
    reader holds one batch and, on an object store, the part's column chunk (one ranged
    request), never a whole decoded part.

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
        dst = out[offsets[k] : offsets[k + 1]]
        pos = 0
        try:
            src = opener()
            with _opened(src):
                md = footers.get(k, src)
                if md.num_rows != n:
                    raise ShardMismatchError(
                        f"index part {k}: has {md.num_rows} rows, its shard has {n}: the "
                        "index is stale"
                    )
                # local: buffered reads of BUFFER bytes; remote: the column chunk in one
                # ranged request (a buffered stream would make one request per BUFFER)
                local = isinstance(src, str)
                with pq.ParquetFile(
                    src, metadata=md, pre_buffer=False, buffer_size=BUFFER if local else 0
                ) as pf:
                    for batch in pf.iter_batches(BATCH, columns=[name], use_threads=False):
                        arr = batch.column(0)
                        m = len(arr)
                        if arr.null_count and dst.dtype.kind in "iub":
                            wide = np.empty(n, dtype=np.float64)  # nulls: NaN in float64
                            wide[:pos] = dst[:pos]
                            dst = wide
                            with lock:
                                late[k] = wide
                        _put(dst[pos : pos + m], arr)
                        pos += m
        except (OSError, pa.ArrowInvalid) as e:
            raise ShardsError(f"index part {k}: unreadable: {e}") from e
        if pos != n:
            raise ShardMismatchError(
                f"index part {k}: has {pos} rows, its shard has {n}: the index is stale"
            )

    # parts in flight at once hold their buffers: keep them to about 1/8 of the column
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
    release_memory()
    return out


def _put(dst: np.ndarray, arr: pa.Array) -> None:
    """``arr``'s values into ``dst`` (same length); nulls as NaN. Numeric values are read from
    the Arrow buffers themselves; other types go through pyarrow's conversion."""
    np_type = _NUMPY.get(arr.type)
    if np_type is None:  # booleans, strings, nested types
        dst[:] = arr.to_numpy(zero_copy_only=False)
        return
    if len(arr) == 0:
        return
    validity, data = arr.buffers()[:2]
    end = arr.offset + len(arr)
    dst[:] = np.frombuffer(data, dtype=np_type, count=end)[arr.offset :]
    if arr.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), count=end, bitorder="little")
        dst[bits[arr.offset :] == 0] = np.nan


def release_memory() -> None:
    """Hand freed memory back to the system: Arrow's pool keeps freed pages, and glibc's heap
    keeps what the reader's and numpy's short-lived buffers left below its top (a no-op
    where there is no glibc)."""
    pa.default_memory_pool().release_unused()
    trim_heap()


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
