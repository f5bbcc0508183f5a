"""validate(path): every problem in a dataset, each message naming its file (the module is
named validation so that importing it never hides the function ``shards.validate``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import ShardsError, UnsafePathError
from .hashing import sha256_bytes, sha256_file
from .index import read_index
from .manifest import MANIFEST_NAME, read_manifest
from .paths import resolve_shard_path
from .remote import RemoteDataset, is_remote
from .storage_options import StorageOptions


def validate(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    storage: StorageOptions | None = None,
) -> list[str]:
    """Check a dataset thoroughly and return the problems found (empty when sound). A remote
    dataset (``gs://``, ``s3://``) is checked through its local cache (``cache_dir``): every
    shard is downloaded and checked as a local one would be.

    Checks: manifest present, readable and of a known format version; counts balance
    (``input == written + dead_letter``) and ``written`` equals the shard rows; each shard
    path is relative and inside the dataset; each shard exists, has the recorded size and
    sha256, reads as an Arrow IPC stream with the recorded row count and the same schema as
    the other shards; each shard's index part (when the manifest lists one) has the recorded
    size and sha256 and holds, row for row, the same values as the shard's columns; either
    every shard has an index part or none has.
    """
    remote = RemoteDataset(str(path), cache_dir, storage=storage) if is_remote(path) else None
    root = remote.root if remote else Path(path)
    try:
        manifest = remote.manifest() if remote else read_manifest(root)
    except ShardsError as e:
        return [str(e)]
    mpath = f"{remote.uri}/{MANIFEST_NAME}" if remote else root / MANIFEST_NAME
    problems: list[str] = []
    problems += _check_counts(manifest, mpath)
    indexed = sum(isinstance(e.get("index"), dict) for e in manifest["shards"])
    if 0 < indexed < len(manifest["shards"]):
        problems.append(
            f"{mpath}: {indexed} of {len(manifest['shards'])} shards list an index part; "
            "either all or none must"
        )
    schema: pa.Schema | None = None
    schema_from = ""
    for i, entry in enumerate(manifest["shards"]):
        rel = entry.get("path")
        try:
            full = resolve_shard_path(root, rel)
        except UnsafePathError as e:
            problems.append(f"{mpath}: shards[{i}]: {e}")
            continue
        if remote:
            try:
                remote.fetch(rel, None)  # checked below, like a local file
            except ShardsError as e:
                problems.append(str(e))
                continue
            stored = remote.object_size(rel)
            if "bytes" in entry and stored != int(entry["bytes"]):
                problems.append(
                    f"{remote.uri}/{rel}: {stored} bytes, manifest says {entry['bytes']}"
                )
        shard_problems, table_schema = _check_shard(full, entry)
        problems += shard_problems
        if isinstance(entry.get("index"), dict) and not shard_problems:
            problems += _check_index(root, remote, full, entry)
        if table_schema is not None:
            if schema is None:
                schema, schema_from = table_schema, str(full)
            elif not table_schema.equals(schema):
                problems.append(f"{full}: schema differs from {schema_from}")
    return problems


def _check_counts(manifest: dict[str, Any], mpath: Path) -> list[str]:
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        return [f"{mpath}: 'counts' is not an object"]
    try:
        n_in, n_written, n_dead = (int(counts[k]) for k in ("input", "written", "dead_letter"))
    except (KeyError, TypeError, ValueError):
        return [f"{mpath}: counts must hold integer input, written and dead_letter"]
    problems = []
    if n_in != n_written + n_dead:
        problems.append(
            f"{mpath}: counts do not balance: input {n_in} != written {n_written} + "
            f"dead_letter {n_dead}"
        )
    shard_rows = sum(int(s.get("rows", 0)) for s in manifest["shards"])
    if shard_rows != n_written:
        problems.append(
            f"{mpath}: counts.written is {n_written} but the shards hold {shard_rows} rows"
        )
    return problems


def _check_index(
    root: Path, remote: RemoteDataset | None, shard: Path, entry: dict[str, Any]
) -> list[str]:
    ix = entry["index"]
    rel = ix.get("path")
    try:
        full = resolve_shard_path(root, rel)
    except UnsafePathError as e:
        return [f"{entry['path']}: index: {e}"]
    name = f"{remote.uri}/{rel}" if remote else str(full)
    try:
        data = remote.read_bytes(rel) if remote else full.read_bytes()
    except (OSError, FileNotFoundError):
        return [f"{name}: index part listed in the manifest is missing"]
    problems = []
    if "bytes" in ix and len(data) != int(ix["bytes"]):
        problems.append(f"{name}: {len(data)} bytes, manifest says {ix['bytes']}")
    if "sha256" in ix and sha256_bytes(data) != ix["sha256"]:
        problems.append(f"{name}: sha256 mismatch (the index part is corrupt or was modified)")
    try:
        index = read_index(data)
    except (OSError, pa.ArrowInvalid) as e:
        return problems + [f"{name}: unreadable as Parquet: {e}"]
    if (
        index.num_rows != int(entry["rows"])
        or int(ix.get("rows", index.num_rows)) != index.num_rows
    ):
        return problems + [
            f"{name}: has {index.num_rows} rows, the manifest says {ix.get('rows')} and the "
            f"shard {entry['rows']}"
        ]
    with pa.memory_map(str(shard), "r") as src:
        table = pa.ipc.open_stream(src).read_all()
    for col in index.column_names:
        if col not in table.column_names:
            problems.append(f"{name}: column {col!r} is not in the shard")
        elif not _same(index.column(col), table.column(col)):
            problems.append(f"{name}: column {col!r} differs from the shard's (stale index)")
    return problems


def _same(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    """Equal values (NaN equal to NaN in floating columns)."""
    if len(a) != len(b) or a.type != b.type:
        return False
    if pa.types.is_floating(a.type):
        import numpy as np

        return bool(np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True))
    return a.equals(b)


def _check_shard(full: Path, entry: dict[str, Any]) -> tuple[list[str], pa.Schema | None]:
    if not full.is_file():
        return [f"{full}: shard listed in the manifest is missing"], None
    problems: list[str] = []
    size = full.stat().st_size
    if "bytes" in entry and size != int(entry["bytes"]):
        kind = "truncated" if size < int(entry["bytes"]) else "wrong size"
        problems.append(f"{full}: {kind}: {size} bytes, manifest says {entry['bytes']}")
    if "sha256" in entry and sha256_file(full) != entry["sha256"]:
        problems.append(f"{full}: sha256 mismatch (the file is corrupt or was modified)")
    try:
        with pa.memory_map(str(full), "r") as src:
            table = pa.ipc.open_stream(src).read_all()
            table.validate(full=True)
    except (OSError, pa.ArrowInvalid, pa.ArrowException) as e:
        problems.append(f"{full}: unreadable as an Arrow IPC stream: {e}")
        return problems, None
    if table.num_rows != int(entry["rows"]):
        problems.append(f"{full}: has {table.num_rows} rows, manifest says {entry['rows']}")
    names = table.schema.names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"{full}: column names repeated in the schema: {', '.join(repeated)}")
    return problems, table.schema
