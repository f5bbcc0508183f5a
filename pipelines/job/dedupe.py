"""Repeated ids across the whole corpus, found without gathering the ids on one worker.

Only when ids come from a field of the input (generated ids are unique by construction).
Each part sends its ids to ``buckets`` keys by crc32(id) (:func:`pipelines.job.stage`); each
bucket sorts its ids with the part key and row and keeps the first of every id, in input
order (the smallest part key, then row): the others are *losers*, dead-lettered when their
part's shard is written. One bucket holds about ``rows / buckets`` ids: ``buckets`` is planned
from the launcher's row estimate (:func:`plan_buckets`).
"""

from __future__ import annotations

import math

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

IDS_PER_BUCKET = 100_000  # a group, and what the worker that sorts it holds: about 4 MB encoded
MAX_BUCKETS = 65_536
MIN_BUCKETS = 8


def plan_buckets(estimated_rows: int, guessed: bool) -> int:
    """Buckets for about ``IDS_PER_BUCKET`` ids each (1,024 when the size is a guess)."""
    if guessed:
        return 1_024
    return max(MIN_BUCKETS, min(MAX_BUCKETS, math.ceil(estimated_rows / IDS_PER_BUCKET)))


def pack_ids(ids: pa.Array, rows: np.ndarray) -> tuple[bytes, bytes, bytes]:
    """A piece of a part's ids as bytes: the int32 offsets and UTF-8 data of the ids (a string
    array) and their rows in the part (int32; a part holds far fewer than 2**31 rows)."""
    ids = ids.cast(pa.string())
    if ids.null_count:
        raise ValueError("an id is missing: ids are checked when records are read")
    off = np.frombuffer(ids.buffers()[1], np.int32, len(ids) + 1, ids.offset * 4)
    data = ids.buffers()[2]
    blob = data.slice(int(off[0]), int(off[-1] - off[0])).to_pybytes() if data else b""
    return (off - off[0]).astype(np.int32).tobytes(), blob, rows.astype(np.int32).tobytes()


def unpack_ids(offsets: bytes, data: bytes) -> pa.Array:
    """The string array :func:`pack_ids` packed."""
    n = len(offsets) // 4 - 1
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def losers(element: tuple[int, list]):
    """``(bucket, [(part key, offsets, data, rows), ...])`` -> ``(part key, rows)`` of every
    repeat of an id after its first, per part."""
    _, pieces = element
    pieces = [(k, unpack_ids(o, d), np.frombuffer(r, np.int32)) for k, o, d, r in pieces]
    pieces = [p for p in pieces if len(p[1])]
    if not pieces:
        return
    ids = pa.concat_arrays([a for _, a, _ in pieces])
    keys = pa.array([k for k, a, _ in pieces for _ in range(len(a))], pa.string())
    rows = pa.array(np.concatenate([r for _, _, r in pieces]).astype(np.int64))
    table = pa.table({"id": ids, "key": keys, "row": rows})
    table = table.take(
        pc.sort_indices(table, [("id", "ascending"), ("key", "ascending"), ("row", "ascending")])
    )
    sorted_ids = table["id"]
    if len(sorted_ids) < 2:
        return
    repeat = pc.equal(sorted_ids.slice(1), sorted_ids.slice(0, len(sorted_ids) - 1))
    mask = np.zeros(len(sorted_ids), dtype=bool)
    mask[1:] = repeat.to_numpy(zero_copy_only=False)
    if not mask.any():
        return
    lost = table.filter(pa.array(mask))
    for key in sorted(set(lost["key"].to_pylist())):
        sel = lost.filter(pc.equal(lost["key"], key))
        yield key, np.sort(sel["row"].to_numpy())


class FindRepeatedIds(beam.PTransform):
    """``(bucket, (key, offsets, data, rows))`` -> ``(part key, rows to drop)``."""

    def expand(self, ids):
        return ids | "GroupByIdBucket" >> beam.GroupByKey() | "Losers" >> beam.FlatMap(losers)
