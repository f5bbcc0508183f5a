"""What the launcher knows before the job starts: the inputs, their sizes and an estimate.

Only metadata is touched, in parallel (a thread pool): one listing per input spec, the first
64 KiB of up to 8 line files and the footers of Parquet files (every footer when there are at
most ``EXACT_PARQUET_FILES``, else a sample of them: the rows are then estimated). No pass
over the data: a terabyte corpus is planned in seconds.

The job graph holds *sources*, never read units: a built-in corpus, a saved or streamed
dataset, or a list of up to ``FILES_PER_SOURCE`` files (inline in the graph when there are
few, else in a plan object the launcher writes under the run's staging prefix). Workers cut
sources into read units (:mod:`pipelines.plan.units`), so the graph stays small whatever the
number of files. Every file gets an input index (its place among all inputs, in the order
given and then by path): part keys and shard names follow it, so shards keep input order.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipelines.corpora import is_builtin, parse_builtin
from pipelines.io import storage as fs

JSONL = (".jsonl", ".ndjson", ".json")
TEXT = (".txt", ".text", ".md")
COMPRESSED = (".gz", ".bz2", ".zst", ".deflate")
SAMPLE_BYTES = 64 << 10  # read from the head of a line file to estimate bytes per record
SAMPLE_FILES = 8
EXACT_PARQUET_FILES = 1_000  # up to this many Parquet files, every footer is read
SAMPLE_PARQUET_FILES = 64
FILES_PER_SOURCE = 1_000  # files per plan object (and inline in the graph up to this many)
COMPRESSION_GUESS = 4.0  # decompressed / compressed bytes, when a file is compressed
UNKNOWN_ROWS = 1_000_000  # assumed size of a streamed Hub dataset
PYTHON_DOCS_ROWS = 6_500
METADATA_THREADS = 32


def strip_compression(path: str) -> str:
    for ext in COMPRESSED:
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def is_line_file(path: str) -> bool:
    return strip_compression(path).endswith(JSONL + TEXT)


def is_splittable(path: str) -> bool:
    """Uncompressed line files and Parquet files are cut into units; the rest is read whole."""
    return path == strip_compression(path) and (is_line_file(path) or path.endswith(".parquet"))


@dataclass
class Plan:
    """The sources of a job and what the launcher estimated about them."""

    sources: list[tuple] = field(default_factory=list)  # non-file sources (graph elements)
    files: list[tuple[int, str, int]] = field(default_factory=list)  # (input index, path, size)
    rows: int = 0
    bytes: int = 0
    exact: bool = True  # rows known from metadata (Parquet footers, built-ins, saved sets)
    bytes_per_record: float = 500.0
    streamed: bool = False  # a Hub stream: its size is a guess

    @property
    def inputs(self) -> int:
        return len(self.files) + len(self.sources)

    def file_batches(self) -> list[list[tuple[int, str, int]]]:
        """The files in batches of at most ``FILES_PER_SOURCE`` (one graph element each)."""
        return [
            self.files[i : i + FILES_PER_SOURCE]
            for i in range(0, len(self.files), FILES_PER_SOURCE)
        ]

    def fingerprint(self) -> str:
        """A hash of every source and file (path and size): a resumed run must see the same."""
        text = json.dumps([self.sources, self.files], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def describe(self) -> dict:
        return {
            "inputs": self.inputs,
            "files": len(self.files),
            "estimated_rows": self.rows,
            "estimated_bytes": self.bytes,
            "rows_exact": self.exact,
        }


def plan_inputs(specs: list[str]) -> Plan:
    """Resolve input specs into sources and a size estimate; raise ``FileNotFoundError`` for
    a spec matching nothing and ``ValueError`` for a file of unknown format."""
    plan = Plan()
    file_specs = [s for s in specs if not (is_builtin(s) or s.startswith("hf:"))]
    file_specs = [s for s in file_specs if fs.is_remote(s) or not _is_saved_dataset(s)]
    with ThreadPoolExecutor(METADATA_THREADS) as pool:
        listed = dict(zip(file_specs, pool.map(_files_of, file_specs), strict=True))
        index = 0
        for spec in specs:
            if spec in listed:
                for path, size in listed[spec]:
                    plan.files.append((index, path, size))
                    index += 1
            else:
                _plan_other(spec, index, plan)
                index += 1
        for _, path, _ in plan.files:
            if not (is_line_file(path) or strip_compression(path).endswith(".parquet")):
                raise ValueError(
                    f"cannot tell the format of {path!r}: use .jsonl, .parquet or .txt "
                    "(optionally compressed), a saved HF dataset directory, hf:NAME or "
                    "builtin:NAME"
                )
        _estimate_files(plan, pool)
    return plan


def _plan_other(spec: str, index: int, plan: Plan) -> None:
    if is_builtin(spec):
        name, params = parse_builtin(spec)
        if name == "graded":
            n, start = params.pop("n", 10_000), params.pop("start", 0)
            rest = "".join(f"&{k}={v}" for k, v in sorted(params.items()))
            plan.sources.append(("graded", index, rest, start, n))
            plan.rows += n
            plan.bytes += n * 330
        else:
            plan.sources.append(("builtin", index, spec))
            rows = params.get("limit") or PYTHON_DOCS_ROWS
            plan.rows += rows
            plan.bytes += rows * 400
    elif spec.startswith("hf:"):
        plan.sources.append(("hf_hub", index, spec[3:]))
        plan.rows += UNKNOWN_ROWS
        plan.bytes += UNKNOWN_ROWS * 500
        plan.exact, plan.streamed = False, True
    else:
        _plan_saved_dataset(spec, index, plan)


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
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name))
        for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def _plan_saved_dataset(path: str, index: int, plan: Plan) -> None:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(path)  # memory-maps the Arrow files: metadata only
    parts = [(k, ds[k]) for k in sorted(ds)] if isinstance(ds, DatasetDict) else [("", ds)]
    plan.sources.append(("hf_disk", index, path, [(k, p.num_rows) for k, p in parts]))
    plan.rows += sum(p.num_rows for _, p in parts)
    plan.bytes += sum(p.data.nbytes for _, p in parts)


def _estimate_files(plan: Plan, pool: ThreadPoolExecutor) -> None:
    """Rows and bytes of the listed files, from their sizes, a few heads and the footers."""
    lines = [(p, s) for _, p, s in plan.files if is_line_file(p)]
    parquet = [(p, s) for _, p, s in plan.files if p.endswith(".parquet")]
    packed = [(p, s) for _, p, s in plan.files if not is_line_file(p) and (p, s) not in parquet]
    if packed:  # compressed Parquet: read whole by a worker; size only here
        plan.bytes += int(sum(s * COMPRESSION_GUESS for _, s in packed))
        plan.rows += sum(max(1, round(s * COMPRESSION_GUESS / 200)) for _, s in packed)
        plan.exact = False
    if lines:
        plan.bytes_per_record = _bytes_per_record(lines[:SAMPLE_FILES], pool)
        decompressed = sum(
            s if p == strip_compression(p) else s * COMPRESSION_GUESS for p, s in lines
        )
        plan.bytes += int(decompressed)
        plan.rows += sum(
            max(
                1,
                round(
                    (s if p == strip_compression(p) else s * COMPRESSION_GUESS)
                    / plan.bytes_per_record
                ),
            )
            for p, s in lines
            if s
        )
        plan.exact = False
    if parquet:
        sample = (
            parquet
            if len(parquet) <= EXACT_PARQUET_FILES
            else parquet[:: math.ceil(len(parquet) / SAMPLE_PARQUET_FILES)]
        )
        footers = list(pool.map(lambda ps: _parquet_rows(ps[0]), sample))
        rows, nbytes = sum(r for r, _ in footers), sum(b for _, b in footers)
        if len(sample) == len(parquet):
            plan.rows += rows
            plan.bytes += nbytes
        else:  # scale the sample by file size
            sampled_size = sum(s for _, s in sample) or 1
            scale = sum(s for _, s in parquet) / sampled_size
            plan.rows += round(rows * scale)
            plan.bytes += round(nbytes * scale)
            plan.exact = False


def _bytes_per_record(files: list[tuple[str, int]], pool: ThreadPoolExecutor) -> float:
    """Mean bytes per line in the first 64 KiB of some line files (decompressed)."""

    def head(path_size: tuple[str, int]) -> tuple[int, int]:
        path, size = path_size
        if size == 0:
            return 0, 0
        with fs.open_read(path, compressed=path != strip_compression(path)) as fh:
            data = fh.read(SAMPLE_BYTES)
        lines = data.count(b"\n")
        if len(data) < SAMPLE_BYTES and not data.endswith(b"\n"):
            lines += 1  # the last line of a small file has no newline
        return len(data), max(lines, 1)

    heads = list(pool.map(head, files))
    total_bytes, total_lines = sum(b for b, _ in heads), sum(n for _, n in heads)
    return total_bytes / total_lines if total_lines else 500.0


def _parquet_rows(path: str) -> tuple[int, int]:
    """``(rows, uncompressed bytes)`` of a Parquet file, from its footer."""
    import pyarrow.parquet as pq

    with fs.open_read(path) as fh:
        meta = pq.ParquetFile(fh).metadata
    nbytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return meta.num_rows, nbytes
