"""Turn input specs into raw items, without Beam: every unit of input is read here.

An *item* is a plain tuple so it pickles cheaply between Beam workers:

- ``("ok", source, position, payload)``: a parsed record (``payload`` is a dict);
- ``("dead", source, position, reason, payload)``: input that could not be parsed.

Formats, by name: ``*.jsonl`` / ``*.ndjson`` / ``*.json`` (one JSON object per line),
``*.parquet``, ``*.txt`` / ``*.md`` (one record per non-blank line, field ``text``),
each optionally ``.gz`` / ``.bz2`` / ``.zst`` (decompressed by Beam's FileSystems); a
directory written by ``datasets.Dataset.save_to_disk``; ``hf:NAME[:SPLIT][:CONFIG]``
(a Hub dataset, streamed: the only path that uses the network); ``builtin:NAME``.
Blank lines of JSONL and text files are not records and are not counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from pipelines.corpora import is_builtin, load_builtin, parse_builtin

Item = tuple
_JSONL = (".jsonl", ".ndjson", ".json")
_TEXT = (".txt", ".text", ".md")
_COMPRESSED = (".gz", ".bz2", ".zst", ".deflate")
BUILTIN_CHUNK = 5_000
# Uncompressed line files are cut at line starts into units of about size / 32 bytes (64 KiB
# to 64 MiB), so that each unit is read and scored where it lands (no data shuffle).
MIN_UNIT_BYTES = 64 << 10
MAX_UNIT_BYTES = 64 << 20


def _strip_compression(path: str) -> str:
    for ext in _COMPRESSED:
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def expand_inputs(specs: list[str]) -> list[tuple[str, str]]:
    """Resolve specs into sorted ``(kind, target)`` read units; raise on a spec matching nothing.

    Kinds: ``lines`` (``(kind, path, start byte, end byte, first line)``: a piece of an
    uncompressed JSONL / text file), ``parquet`` (``(kind, path, first row group, row groups,
    first row)``), ``file`` (a whole file), ``hf_disk``, ``hf_hub``, ``builtin``. A large
    ``builtin:graded`` is cut into chunks of 5,000 records (``start=`` / ``n=``) so that
    workers generate in parallel.
    """
    from apache_beam.io.filesystems import FileSystems

    units: list[tuple[str, str]] = []
    for spec in specs:
        if is_builtin(spec):
            units.extend(("builtin", s) for s in _chunk_builtin(spec))
        elif spec.startswith("hf:"):
            units.append(("hf_hub", spec[3:]))
        elif os.path.isdir(spec):
            if os.path.exists(os.path.join(spec, "dataset_info.json")) or os.path.exists(
                os.path.join(spec, "state.json")
            ):
                units.append(("hf_disk", spec))
            else:
                files = sorted(
                    os.path.join(root, f)
                    for root, _, names in os.walk(spec)
                    for f in names
                    if not f.startswith(".")
                )
                if not files:
                    raise FileNotFoundError(f"input directory {spec!r} holds no files")
                units.extend(("file", f) for f in files)
        else:
            matches = FileSystems.match([spec])[0].metadata_list
            if not matches:
                raise FileNotFoundError(f"input {spec!r} matches no file")
            units.extend(("file", m.path) for m in sorted(matches, key=lambda m: m.path))
    for kind, target in units:
        if kind == "file" and not _strip_compression(target).endswith(
            _JSONL + _TEXT + (".parquet",)
        ):
            raise ValueError(
                f"cannot tell the format of {target!r}: use .jsonl, .parquet or .txt "
                "(optionally compressed), a saved HF dataset directory, hf:NAME or builtin:NAME"
            )
    return [u for kind, target in units for u in _split(kind, target)]


def _split(kind: str, path: str) -> list[tuple]:
    """Read units of one input: pieces of an uncompressed line or Parquet file, else itself."""
    if kind == "file" and path.endswith(".parquet"):
        return _split_parquet(path)
    if kind == "file" and path.endswith(_JSONL + _TEXT):
        return _split_lines(path)
    return [(kind, path)]


def _split_parquet(path: str) -> list[tuple]:
    """An uncompressed-name Parquet file -> ``parquet`` units of whole row groups
    ``(kind, path, first group, number of groups, first row)``, about size / 32 bytes each
    (from the footer only; no data is read)."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        meta = pq.ParquetFile(fh).metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    total = sum(g.total_byte_size for g in groups)
    step = min(MAX_UNIT_BYTES, max(MIN_UNIT_BYTES, total // 32))
    units, first, row, size = [], 0, 0, 0
    for i, g in enumerate(groups):
        size += g.total_byte_size
        if size >= step or i == len(groups) - 1:
            units.append(("parquet", path, first, i + 1 - first, row))
            row += sum(groups[k].num_rows for k in range(first, i + 1))
            first, size = i + 1, 0
    return units or [("parquet", path, 0, 0, 0)]


def _split_lines(path: str) -> list[tuple]:
    """An uncompressed JSONL / text file -> ``lines`` units cut just after a newline, each
    with the number of the line it starts at (one sequential pass counting newlines)."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    step = min(MAX_UNIT_BYTES, max(MIN_UNIT_BYTES, size // 32))
    cuts = [(0, 0)]  # (byte offset, line number) of each unit's first line
    offset, lines, target = 0, 0, step
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        while target < size:
            block = fh.read(1 << 20)
            if not block:
                break
            end = offset + len(block)
            while target < end:
                nl = block.find(b"\n", max(0, target - offset))
                if nl < 0:
                    break
                cuts.append((offset + nl + 1, lines + block.count(b"\n", 0, nl + 1)))
                target = offset + nl + 1 + step
            lines += block.count(b"\n")
            offset = end
    bounds = [c for c in cuts if c[0] < size] + [(size, -1)]
    return [("lines", path, a, b, n) for (a, n), (b, _) in zip(bounds, bounds[1:], strict=False)]


def is_fine_grained(unit: tuple) -> bool:
    """Whether a unit is small enough to be scored where it is read (no shuffle of its
    records): a piece of a line file, row groups of a Parquet file, or a chunk of
    ``builtin:graded``."""
    if unit[0] in ("lines", "parquet"):
        return True
    return unit[0] == "builtin" and unit[1].startswith("builtin:graded")


def _chunk_builtin(spec: str) -> list[str]:
    name, params = parse_builtin(spec)
    if name != "graded":
        return [spec]
    n, start = params.pop("n", 10_000), params.pop("start", 0)
    rest = "".join(f"&{k}={v}" for k, v in sorted(params.items()))
    return [
        f"builtin:graded?start={s}&n={min(BUILTIN_CHUNK, start + n - s)}{rest}"
        for s in range(start, start + n, BUILTIN_CHUNK)
    ] or [f"builtin:graded?start={start}&n=0{rest}"]


def read_unit(unit: tuple) -> Iterator[Item]:
    """Yield the items of one read unit, in a deterministic order."""
    kind, target = unit[0], unit[1]
    if kind == "lines":
        yield from _read_lines(target, *unit[2:])
    elif kind == "parquet":
        yield from _read_parquet(target, *unit[2:])
    elif kind == "builtin":
        name, params = parse_builtin(target)
        offset = params.get("start", 0)
        for i, record in enumerate(load_builtin(target)):
            yield ("ok", f"builtin:{name}", offset + i, record)
    elif kind == "hf_disk":
        yield from _read_hf_disk(target)
    elif kind == "hf_hub":
        yield from _read_hf_hub(target)
    else:
        yield from _read_file(target)


def _read_file(path: str) -> Iterator[Item]:
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    base = _strip_compression(path)
    if base.endswith(".parquet"):
        yield from _read_parquet(path)
        return
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as fh:
        yield from _parse_lines(path, iter(fh.readline, b""), 0)


def _read_lines(path: str, start: int, end: int, first_line: int) -> Iterator[Item]:
    """The lines of ``path`` that start in bytes [start, end) (``start`` is a line start)."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    def lines(fh) -> Iterator[bytes]:
        offset = start
        while offset < end:
            raw = fh.readline()
            if not raw:
                return
            offset += len(raw)
            yield raw

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.seek(start)
        yield from _parse_lines(path, lines(fh), first_line)


def _parse_lines(path: str, raws, first_line: int) -> Iterator[Item]:
    """Items of JSONL / text lines; ``position`` is the 0-based line number in the file
    (blank lines are not records, but are counted)."""
    base = _strip_compression(path)
    for position, raw in enumerate(raws, start=first_line):
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
        if base.endswith(_TEXT):
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
    path: str, first_group: int = 0, n_groups: int | None = None, first_row: int = 0
) -> Iterator[Item]:
    """Rows of ``n_groups`` row groups from ``first_group`` (all when None); ``position`` is
    the row number in the file."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        pf = pq.ParquetFile(fh)
        if n_groups is None:
            n_groups = pf.metadata.num_row_groups - first_group
        groups = list(range(first_group, first_group + n_groups))
        position = first_row
        for batch in pf.iter_batches(batch_size=4096, row_groups=groups):
            for row in batch.to_pylist():
                yield ("ok", path, position, row)
                position += 1


def _read_hf_disk(path: str) -> Iterator[Item]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(path)
    parts = (
        [(f"{path}:{k}", ds[k]) for k in sorted(ds)]
        if isinstance(ds, DatasetDict)
        else [(path, ds)]
    )
    for source, part in parts:
        for position, row in enumerate(part):
            yield ("ok", source, position, dict(row))


def _read_hf_hub(name: str) -> Iterator[Item]:
    from datasets import load_dataset

    repo, _, rest = name.partition(":")
    split, _, config = rest.partition(":")
    ds = load_dataset(repo, config or None, split=split or "train", streaming=True)
    for position, row in enumerate(ds):
        yield ("ok", f"hf:{name}", position, dict(row))


def read_sample(specs: list[str], n: int) -> list[str]:
    """The texts of the first ``n`` parseable records with a text, driver side (reference LM)."""
    texts: list[str] = []
    for unit in expand_inputs(specs):
        for item in read_unit(unit):
            if item[0] == "ok":
                text = item[3].get("text")
                if isinstance(text, str) and text.strip():
                    texts.append(text)
                    if len(texts) >= n:
                        return texts
    return texts


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a payload for dead letters."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
