"""What the launcher knows before the job starts: the read units and a size estimate.

Only metadata is touched here: file sizes (one listing), Parquet footers, the first 64 KiB of
at most 8 line files (to estimate bytes per record), a saved dataset's row count. No pass
over the data: a terabyte corpus is planned in seconds.

Read units (plain tuples, cheap to pickle):

- ``("lines", path, start, end)``: the lines of an uncompressed JSONL / text file whose first
  byte lies in ``[start, end)``. Cuts are made from the file size alone; the reader skips to
  the first line start at or after ``start``. A record's position is its byte offset.
- ``("parquet", path, first group, number of groups, first row)``: whole row groups.
- ``("file", path)``: a compressed file, read whole (its batches are spread with a Reshuffle).
- ``("hf_disk", path)``, ``("hf_hub", name)``, ``("builtin", spec)``.

The estimate fixes the number of shards before any record is read (``--num-shards``
overrides it), so staging can be partitioned by shard and every shard writer reads only its
own pieces.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from pipelines.corpora import is_builtin, parse_builtin
from pipelines.io import storage as fs

JSONL = (".jsonl", ".ndjson", ".json")
TEXT = (".txt", ".text", ".md")
COMPRESSED = (".gz", ".bz2", ".zst", ".deflate")
BUILTIN_CHUNK = 5_000
# Line files are cut into units of about size / 32 bytes (64 KiB to 64 MiB), so every worker
# gets work and each unit is read and scored where it lands.
MIN_UNIT_BYTES = 64 << 10
MAX_UNIT_BYTES = 64 << 20
SAMPLE_BYTES = 64 << 10  # read from the head of a line file to estimate bytes per record
SAMPLE_FILES = 8
COMPRESSION_GUESS = 4.0  # decompressed / compressed bytes, when a file is compressed
UNKNOWN_ROWS = 1_000_000  # assumed size of a streamed Hub dataset (set --num-shards instead)
PYTHON_DOCS_ROWS = 6_500
STAGED_OVERHEAD = 96  # bytes per record staged besides its input bytes (id, scores, hash)


@dataclass
class Plan:
    """The read units of a job and what the launcher estimated about them."""

    units: list[tuple] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    exact: bool = True  # rows known from metadata (Parquet footers, built-ins, saved sets)

    def num_shards(self, rows_per_shard: int, shard_bytes: int) -> int:
        """Enough hash shards for about ``rows_per_shard`` rows and ``shard_bytes`` staged
        bytes each."""
        staged = self.bytes + STAGED_OVERHEAD * self.rows
        return max(1, math.ceil(self.rows / rows_per_shard), math.ceil(staged / shard_bytes))

    def describe(self) -> dict:
        return {
            "units": len(self.units),
            "estimated_rows": self.rows,
            "estimated_bytes": self.bytes,
            "rows_exact": self.exact,
        }


def strip_compression(path: str) -> str:
    for ext in COMPRESSED:
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def plan_inputs(specs: list[str]) -> Plan:
    """Resolve input specs into read units and a size estimate; raise ``FileNotFoundError``
    for a spec matching nothing and ``ValueError`` for a file of unknown format."""
    plan = Plan()
    files: list[tuple[str, int]] = []
    for spec in specs:
        if is_builtin(spec):
            _plan_builtin(spec, plan)
        elif spec.startswith("hf:"):
            plan.units.append(("hf_hub", spec[3:]))
            plan.rows += UNKNOWN_ROWS
            plan.bytes += UNKNOWN_ROWS * 500
            plan.exact = False
        elif not fs.is_remote(spec) and _is_saved_dataset(spec):
            _plan_saved_dataset(spec, plan)
        else:
            files.extend(_files_of(spec))
    for path, _ in files:
        if not strip_compression(path).endswith(JSONL + TEXT + (".parquet",)):
            raise ValueError(
                f"cannot tell the format of {path!r}: use .jsonl, .parquet or .txt "
                "(optionally compressed), a saved HF dataset directory, hf:NAME or builtin:NAME"
            )
    _plan_files(files, plan)
    return plan


def _files_of(spec: str) -> list[tuple[str, int]]:
    """``(path, size)`` of the files a spec names: a glob, a file, or a directory (a local
    directory, or a bucket prefix ending in ``/``), hidden files skipped."""
    if spec.endswith("/") or (not fs.is_remote(spec) and os.path.isdir(spec)):
        found = [
            (p, s)
            for p, s in fs.list_prefix(spec)
            if not os.path.basename(p).startswith((".", "_"))
        ]
        if not found:
            raise FileNotFoundError(f"input directory {spec!r} holds no files")
        return found
    found = fs.match(spec)
    if not found:
        raise FileNotFoundError(f"input {spec!r} matches no file")
    return found


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "dataset_info.json"))
        or os.path.exists(os.path.join(path, "state.json"))
        or os.path.exists(os.path.join(path, "dataset_dict.json"))
    )


def _plan_builtin(spec: str, plan: Plan) -> None:
    name, params = parse_builtin(spec)
    if name != "graded":
        plan.units.append(("builtin", spec))
        rows = params.get("limit") or PYTHON_DOCS_ROWS
        plan.rows += rows
        plan.bytes += rows * 400
        return
    n, start = params.pop("n", 10_000), params.pop("start", 0)
    rest = "".join(f"&{k}={v}" for k, v in sorted(params.items()))
    chunks = [
        f"builtin:graded?start={s}&n={min(BUILTIN_CHUNK, start + n - s)}{rest}"
        for s in range(start, start + n, BUILTIN_CHUNK)
    ] or [f"builtin:graded?start={start}&n=0{rest}"]
    plan.units.extend(("builtin", c) for c in chunks)
    plan.rows += n
    plan.bytes += n * 120


def _plan_saved_dataset(path: str, plan: Plan) -> None:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(path)  # memory-maps the Arrow files: metadata only
    parts = [ds[k] for k in ds] if isinstance(ds, DatasetDict) else [ds]
    plan.units.append(("hf_disk", path))
    plan.rows += sum(p.num_rows for p in parts)
    plan.bytes += sum(p.data.nbytes for p in parts)


def _plan_files(files: list[tuple[str, int]], plan: Plan) -> None:
    line_files = [(p, s) for p, s in files if not strip_compression(p).endswith(".parquet")]
    per_record = _bytes_per_record(line_files)
    for path, size in files:
        if strip_compression(path).endswith(".parquet") and path.endswith(".parquet"):
            units, rows, nbytes = _parquet_units(path)
            plan.units.extend(units)
            plan.rows += rows
            plan.bytes += nbytes
            continue
        decompressed = size if path == strip_compression(path) else int(size * COMPRESSION_GUESS)
        plan.rows += max(1, round(decompressed / per_record)) if size else 0
        plan.bytes += decompressed
        plan.exact = False
        if path != strip_compression(path) or strip_compression(path).endswith(".parquet"):
            plan.units.append(("file", path))
        else:
            plan.units.extend(_line_units(path, size))


def _bytes_per_record(files: list[tuple[str, int]]) -> float:
    """Mean bytes per line in the first 64 KiB of up to 8 line files (decompressed)."""
    total_bytes = total_lines = 0
    for path, size in files[:SAMPLE_FILES]:
        if size == 0:
            continue
        with fs.open_read(path, compressed=path != strip_compression(path)) as fh:
            head = fh.read(SAMPLE_BYTES)
        lines = head.count(b"\n")
        if len(head) < SAMPLE_BYTES and not head.endswith(b"\n"):
            lines += 1  # the last line of a small file has no newline
        total_bytes += len(head)
        total_lines += max(lines, 1)
    return total_bytes / total_lines if total_lines else 500.0


def _line_units(path: str, size: int) -> list[tuple]:
    """Byte ranges of about size / 32 (64 KiB to 64 MiB), from the size alone."""
    step = min(MAX_UNIT_BYTES, max(MIN_UNIT_BYTES, size // 32))
    starts = list(range(0, max(size, 1), step))
    return [("lines", path, a, min(a + step, size)) for a in starts]


def _parquet_units(path: str) -> tuple[list[tuple], int, int]:
    """Units of whole row groups of about size / 32 bytes each, from the footer."""
    import pyarrow.parquet as pq

    with fs.open_read(path) as fh:
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
    return units or [("parquet", path, 0, 0, 0)], meta.num_rows, total


def is_fine_grained(unit: tuple) -> bool:
    """Whether a unit is small enough to be scored where it is read (no shuffle of its
    records): a byte range of a line file, row groups of a Parquet file, a chunk of
    ``builtin:graded``."""
    if unit[0] in ("lines", "parquet"):
        return True
    return unit[0] == "builtin" and unit[1].startswith("builtin:graded")
