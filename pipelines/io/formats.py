"""Turn input specs into raw items, without Beam: every unit of input is read here.

An *item* is a plain tuple so it pickles cheaply between Beam workers:

- ``("ok", source, position, payload)``: a parsed record (``payload`` is a dict);
- ``("dead", source, position, reason, payload)``: input that could not be parsed.

Formats, by name: ``*.jsonl`` / ``*.ndjson`` / ``*.json`` (one JSON object per line),
``*.parquet``, ``*.txt`` / ``*.md`` (one record per non-blank line, field ``text``),
each optionally ``.gz`` / ``.bz2`` / ``.zst``, local or in a bucket (``pipelines.io.storage``); a
directory written by ``datasets.Dataset.save_to_disk``; ``hf:NAME[:SPLIT][:CONFIG]``
(a Hub dataset, streamed: the only path that uses the network); ``builtin:NAME``.
Blank lines of JSONL and text files are not records and are not counted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from pipelines.corpora import load_builtin, parse_builtin
from pipelines.io import storage as fs
from pipelines.plan.inputs import TEXT, strip_compression

Item = tuple


def read_unit(unit: tuple) -> Iterator[Item]:
    """Yield the items of one read unit (see :mod:`pipelines.plan.units`), in a deterministic
    order."""
    kind = unit[0]
    if kind == "lines":
        yield from _read_lines(*unit[2:])
    elif kind == "parquet":
        yield from _read_parquet(*unit[2:])
    elif kind == "builtin":
        name, params = parse_builtin(unit[2])
        offset = params.get("start", 0)
        for i, record in enumerate(load_builtin(unit[2])):
            yield ("ok", f"builtin:{name}", offset + i, record)
    elif kind == "hf_disk":
        yield from _read_hf_disk(*unit[2:])
    elif kind == "records":
        yield from unit[2]
    else:
        raise ValueError(f"unknown read unit kind {kind!r}")


def read_whole(kind: str, target: str) -> Iterator[Item]:
    """The items of a source that is read from its start: a compressed file or a Hub stream."""
    if kind == "hf_hub":
        yield from _read_hf_hub(target)
    else:
        yield from _read_file(target)


def _read_file(path: str) -> Iterator[Item]:
    """A whole (compressed) file; ``position`` is the byte offset in the decompressed data
    (the row number for a compressed Parquet file)."""
    if strip_compression(path).endswith(".parquet"):
        import pyarrow as pa

        with fs.open_read(path, compressed=True) as fh:
            yield from _read_parquet(path, source=pa.BufferReader(fh.read()))
        return
    with fs.open_read(path, compressed=True) as fh:
        yield from _parse_lines(path, _offsets(fh, 0, None))


_TAIL_CHUNK = 64 << 10


def _read_lines(path: str, start: int, end: int) -> Iterator[Item]:
    """The lines of ``path`` whose first byte lies in ``[start, end)``: after ``start - 1``
    the reader skips to the next line start, so a line cut by a unit boundary belongs to the
    unit its first byte is in, and every line is read exactly once. The range is read in one
    request (plus what completes its last line), then split in memory."""
    with fs.open_read(path) as fh:
        first = max(start - 1, 0)
        fh.seek(first)
        data = fh.read(end - first)
        while data and not data.endswith(b"\n"):  # complete the last line begun before end
            more = fh.read(_TAIL_CHUNK)
            if not more:
                break
            cut = more.find(b"\n")
            data += more if cut < 0 else more[: cut + 1]
            if cut >= 0:
                break
    skip = 0
    if start > 0:  # the line holding byte start - 1 belongs to the unit before
        newline = data.find(b"\n")
        skip = len(data) if newline < 0 else newline + 1
    yield from _parse_lines(path, _split_lines(data, skip, first, end))


def _split_lines(data: bytes, skip: int, base: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(byte offset, raw line)`` of the lines of ``data[skip:]`` (``data`` starts at byte
    ``base`` of the file) that start before ``end``."""
    pos = skip
    while pos < len(data) and base + pos < end:
        newline = data.find(b"\n", pos)
        stop = len(data) if newline < 0 else newline + 1
        yield base + pos, data[pos:stop]
        pos = stop


def _offsets(fh, offset: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    """``(byte offset, raw line)`` from ``offset`` while the line starts before ``end``."""
    while end is None or offset < end:
        raw = fh.readline()
        if not raw:
            return
        yield offset, raw
        offset += len(raw)


def _parse_lines(path: str, raws: Iterator[tuple[int, bytes]]) -> Iterator[Item]:
    """Items of JSONL / text lines; ``position`` is the line's byte offset in the file.
    Blank lines are not records."""
    base = strip_compression(path)
    for position, raw in raws:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                "dead",
                path,
                position,
                f"invalid UTF-8: {exc.reason} at byte {exc.start}",
                line.decode("utf-8", "backslashreplace"),
            )
            continue
        if base.endswith(TEXT):
            yield ("ok", path, position, {"text": text})
            continue
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            yield (
                "dead",
                path,
                position,
                f"malformed JSON: {exc.msg} (column {exc.colno})",
                text,
            )
            continue
        # A lone surrogate can only come from a JSON \u escape (raw bytes decoded as UTF-8).
        bad = _surrogate_field(payload) if "\\u" in text else None
        if bad is not None:
            # Beam's coders (like Arrow) refuse such strings; keep the raw line instead.
            yield (
                "dead",
                path,
                position,
                f"record is not valid Unicode (lone surrogate in {bad})",
                text,
            )
            continue
        if not isinstance(payload, dict):
            yield (
                "dead",
                path,
                position,
                f"JSON line is a {type(payload).__name__}, not an object",
                payload,
            )
            continue
        yield ("ok", path, position, payload)


def _surrogate_field(value: Any, where: str = "record") -> str | None:
    """Where a lone UTF-16 surrogate hides in a parsed JSON value, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _surrogate_field(k, "a key") or _surrogate_field(v, f"field {k!r}")
            if found:
                return found
    elif isinstance(value, list):
        for v in value:
            found = _surrogate_field(v, where)
            if found:
                return found
    return None


def _read_parquet(
    path: str,
    first_group: int = 0,
    n_groups: int | None = None,
    first_row: int = 0,
    source: Any = None,
) -> Iterator[Item]:
    """Rows of ``n_groups`` row groups from ``first_group`` (all when None); ``position`` is
    the row number in the file."""
    import pyarrow.parquet as pq

    with contextlib.nullcontext(source) if source is not None else fs.open_read(path) as fh:
        pf = pq.ParquetFile(fh)
        if n_groups is None:
            n_groups = pf.metadata.num_row_groups - first_group
        groups = list(range(first_group, first_group + n_groups))
        position = first_row
        for batch in pf.iter_batches(batch_size=4096, row_groups=groups):
            for row in batch.to_pylist():
                yield ("ok", path, position, row)
                position += 1


def _read_hf_disk(path: str, split: str, start: int, end: int) -> Iterator[Item]:
    """Rows ``[start, end)`` of a saved dataset (of ``split`` for a DatasetDict)."""
    from datasets import load_from_disk

    ds = load_from_disk(path)
    part = ds[split] if split else ds
    source = f"{path}:{split}" if split else path
    for offset, row in enumerate(part.select(range(start, end))):
        yield ("ok", source, start + offset, dict(row))


def _read_hf_hub(name: str) -> Iterator[Item]:
    from datasets import load_dataset

    repo, _, rest = name.partition(":")
    split, _, config = rest.partition(":")
    ds = load_dataset(repo, config or None, split=split or "train", streaming=True)
    for position, row in enumerate(ds):
        yield ("ok", f"hf:{name}", position, dict(row))


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a payload for dead letters."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
