"""Row gathers over a list of shards: the vectorised core of ``ShardSet.take`` and ``slice``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

MANY_SHARDS = 32  # take() on a local set: above this many touched shards, one chunked take


def gather(
    idx: np.ndarray,
    offsets: np.ndarray,
    use: Callable[[int], Any],
    columns: list[str] | None,
    combined: Callable[[list[str] | None], pa.Table] | None,
    urgent: Callable[[Sequence[int]], None],
) -> pa.Table:
    """Rows ``idx`` (in range, non-empty) in that order. ``use(i)`` is a context manager
    giving shard i's table for the duration of the block; ``combined`` (a local set) is the
    zero-copy concatenation, used when many shards are touched; ``urgent(shards)`` is told
    every touched shard first (a remote set starts fetching the missing ones in parallel).

    Indices are mapped to (shard, local row) with one ``searchsorted``; each touched shard is
    gathered once (its rows copied out while it is pinned), and one final ``take`` restores
    the requested order."""
    shard = np.searchsorted(offsets, idx, side="right") - 1
    order = np.argsort(shard, kind="stable")
    sorted_shard = shard[order]
    local = idx[order] - offsets[sorted_shard]
    bounds = np.flatnonzero(np.diff(sorted_shard)) + 1
    if combined is not None and bounds.size >= MANY_SHARDS:
        # Many shards touched: Arrow's chunked take beats one take per shard.
        return combined(columns).take(pa.array(idx)).combine_chunks()
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [idx.size]))
    touched = sorted_shard[starts].tolist()
    urgent(touched)
    parts = []
    for s, e, i in zip(starts.tolist(), ends.tolist(), touched, strict=True):
        with use(int(i)) as t:
            if columns is not None:
                t = t.select(columns)
            parts.append(t.take(pa.array(local[s:e])))  # a copy: the shard may go after
    gathered = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if len(parts) == 1 and np.all(order[1:] >= order[:-1]):
        return gathered.combine_chunks()
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size, dtype=np.int64)
    return gathered.take(pa.array(inverse)).combine_chunks()


def slice_parts(ss: Any, offset: int, length: int, columns: list[str] | None) -> pa.Table:
    """Contiguous rows ``[offset, offset + length)`` of ShardSet ``ss`` as a Table."""
    offsets = ss._offsets
    offset = max(0, int(offset))
    stop = min(ss.num_rows, offset + max(0, int(length)))
    parts = []
    first = int(np.searchsorted(offsets, offset, side="right")) - 1
    for i in range(max(first, 0), ss.num_shards):
        a, b = int(offsets[i]), int(offsets[i + 1])
        if a >= stop:
            break
        lo, hi = max(offset, a), min(stop, b)
        if hi > lo:
            t = ss._table(i) if columns is None else ss._table(i).select(columns)
            parts.append(t.slice(lo - a, hi - lo))
    if not parts:
        schema = ss.schema if columns is None else pa.schema([ss.schema.field(c) for c in columns])
        return schema.empty_table()
    return pa.concat_tables(parts)


def numpy_dtype(dtype: pa.DataType) -> np.dtype:
    """numpy dtype of an Arrow type (object when there is none)."""
    try:
        return np.dtype(dtype.to_pandas_dtype())
    except (NotImplementedError, TypeError):
        return np.dtype(object)
