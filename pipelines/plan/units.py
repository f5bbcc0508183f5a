"""Sources -> read units, inside the pipeline (workers, not the launcher).

A read unit is a plain tuple ``(kind, key, ...)``; ``key`` names its *part*: the rows one
worker reads, scores and stages together, and later one shard ``shards/part-<key>.arrow``.
Keys are ``<input index:08d>-<part:06d>``, so sorting them gives input order.

- ``("lines", key, path, start, end)``: the lines of an uncompressed JSONL / text file whose
  first byte lies in ``[start, end)``; cuts come from the file size alone.
- ``("parquet", key, path, first group, number of groups, first row)``: whole row groups.
- ``("builtin", key, spec)``: a built-in corpus or a chunk of ``builtin:graded``.
- ``("hf_disk", key, path, split, start, end)``: rows of a saved dataset.
- ``("whole", input index, kind, target)``: a source that cannot be cut before reading it (a
  compressed file, a Hub stream). :func:`chunk_whole` reads it and yields
  ``("records", key, items)`` units of at most ``Sizing.part_rows`` records each.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from pipelines.io import storage as fs
from pipelines.plan.inputs import is_line_file, is_splittable

MIN_UNIT_BYTES = 256 << 10
MAX_UNIT_BYTES = 64 << 20
SPREAD = 32  # a line file is cut into about this many units (every worker gets work)


def part_key(index: int, part: int) -> str:
    return f"{index:08d}-{part:06d}"


@dataclass(frozen=True)
class Sizing:
    """How big a part may be: about ``part_rows`` records and at most ``part_bytes`` bytes."""

    part_rows: int = 100_000
    part_bytes: int = MAX_UNIT_BYTES
    spread: int = SPREAD

    @classmethod
    def plan(
        cls,
        *,
        rows: int,
        nbytes: int,
        rows_per_shard: int,
        shard_bytes: int,
        num_shards: int = 0,
        bytes_per_record: float = 500.0,
    ) -> Sizing:
        """Parts of about ``rows_per_shard`` rows (or ``rows / num_shards`` when a shard
        count is asked for), never over ``shard_bytes`` nor 64 MiB of input."""
        part_rows = max(1, rows_per_shard)
        part_bytes = min(shard_bytes, MAX_UNIT_BYTES, max(1, int(part_rows * bytes_per_record)))
        spread = SPREAD
        if num_shards > 0:
            part_rows = max(1, math.ceil(rows / num_shards))
            part_bytes = max(1, min(MAX_UNIT_BYTES, math.ceil(nbytes / num_shards)))
            spread = 1
        return cls(part_rows=part_rows, part_bytes=max(1, part_bytes), spread=spread)


def expand_source(source: tuple, sizing: Sizing) -> Iterator[tuple]:
    """A graph source -> file entries ``("file", index, path, size)`` and read units."""
    kind = source[0]
    if kind == "files":
        for index, path, size in source[1]:
            yield ("file", index, path, size)
    elif kind == "plan":  # a plan object written by the launcher (many files)
        for index, path, size in json.loads(fs.read_bytes(source[1])):
            yield ("file", index, path, size)
    elif kind == "builtin":
        yield ("builtin", part_key(source[1], 0), source[2])
    elif kind == "graded":
        _, index, rest, start, n = source
        chunk = min(sizing.part_rows, max(1_000, math.ceil(n / max(sizing.spread, 1))))
        for c, s in enumerate(range(start, start + n, chunk)):
            spec = f"builtin:graded?start={s}&n={min(chunk, start + n - s)}{rest}"
            yield ("builtin", part_key(index, c), spec)
        if n <= 0:
            yield ("builtin", part_key(index, 0), f"builtin:graded?start={start}&n=0{rest}")
    elif kind == "hf_disk":
        _, index, path, splits = source
        part = 0
        for split, rows in splits:
            for s in range(0, max(rows, 1), sizing.part_rows):
                yield (
                    "hf_disk",
                    part_key(index, part),
                    path,
                    split,
                    s,
                    min(rows, s + sizing.part_rows),
                )
                part += 1
    elif kind == "hf_hub":
        yield ("whole", source[1], "hf_hub", source[2])
    else:
        raise ValueError(f"unknown source kind {kind!r}")


def expand_file(entry: tuple, sizing: Sizing) -> Iterator[tuple]:
    """A file entry -> its read units (other units pass through)."""
    if entry[0] != "file":
        yield entry
        return
    _, index, path, size = entry
    if not is_splittable(path):
        yield ("whole", index, "file", path)
    elif is_line_file(path):
        step = max(MIN_UNIT_BYTES, -(-size // max(sizing.spread, 1)))
        step = max(1, min(step, sizing.part_bytes))
        for part, a in enumerate(range(0, max(size, 1), step)):
            yield ("lines", part_key(index, part), path, a, min(a + step, size))
    else:
        yield from _parquet_units(index, path, sizing)


def _parquet_units(index: int, path: str, sizing: Sizing) -> Iterator[tuple]:
    """Units of whole row groups of about ``part_bytes`` and ``part_rows`` each, from the
    footer."""
    import pyarrow.parquet as pq

    with fs.open_read(path) as fh:
        meta = pq.ParquetFile(fh).metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    total = sum(g.total_byte_size for g in groups)
    step = max(1, min(sizing.part_bytes, max(MIN_UNIT_BYTES, total // max(sizing.spread, 1))))
    part, first, row, size, rows = 0, 0, 0, 0, 0
    for i, g in enumerate(groups):
        size += g.total_byte_size
        rows += g.num_rows
        if size >= step or rows >= sizing.part_rows or i == len(groups) - 1:
            yield ("parquet", part_key(index, part), path, first, i + 1 - first, row)
            part, row, first, size, rows = part + 1, row + rows, i + 1, 0, 0
    if not groups:
        yield ("parquet", part_key(index, 0), path, 0, 0, 0)


def chunk_whole(unit: tuple, sizing: Sizing) -> Iterator[tuple]:
    """A ``whole`` unit -> ``("records", key, items)`` chunks of at most ``part_rows`` items
    and about ``part_bytes`` bytes; every other unit passes through unchanged."""
    if unit[0] != "whole":
        yield unit
        return
    from pipelines.io.formats import read_whole

    _, index, kind, target = unit
    chunk: list[tuple] = []
    nbytes, part = 0, 0
    for item in read_whole(kind, target):
        chunk.append(item)
        nbytes += _item_bytes(item)
        if len(chunk) >= sizing.part_rows or nbytes >= sizing.part_bytes:
            yield ("records", part_key(index, part), chunk)
            chunk, nbytes, part = [], 0, part + 1
    if chunk or part == 0:
        yield ("records", part_key(index, part), chunk)


def _item_bytes(item: tuple) -> int:
    payload = item[-1]
    if isinstance(payload, dict):
        text = payload.get("text")
        return len(text) if isinstance(text, str) else 64
    return len(payload) if isinstance(payload, str) else 64


def plan_units(plan, sizing: Sizing | None = None) -> list[tuple]:
    """Every read unit of a plan, expanded here (the launcher's sample, tests, ``--dry-run``
    of a small input); the job itself expands them on its workers. Whole sources come out
    as their ``whole`` unit, not read."""
    sizing = sizing or Sizing()
    sources = [("files", [f]) for f in plan.files] + list(plan.sources)
    sources.sort(key=lambda s: s[1][0][0] if s[0] == "files" else s[1])
    return [
        unit
        for source in sources
        for entry in expand_source(source, sizing)
        for unit in expand_file(entry, sizing)
    ]
