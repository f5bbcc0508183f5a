"""ShardSet: a memory-mapped, read-only view over every shard of a dataset."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ShardMismatchError, ShardsError
from .manifest import read_manifest
from .paths import resolve_shard_path
from .remote import RemoteDataset, is_remote

_MANY_SHARDS = 32  # take(): above this many touched shards, use one chunked take


def _load(full: Path, entry: dict[str, Any]) -> pa.Table:
    try:
        table = read_shard(full)
    except FileNotFoundError as e:
        raise ShardsError(f"{full}: shard listed in the manifest is missing") from e
    except (OSError, pa.ArrowInvalid) as e:
        raise ShardsError(f"{full}: unreadable shard (truncated or corrupt): {e}") from e
    if table.num_rows != int(entry["rows"]):
        raise ShardMismatchError(
            f"{full}: has {table.num_rows} rows, manifest says {entry['rows']}"
        )
    return table


def read_shard(path: str | os.PathLike) -> pa.Table:
    """Memory-map one Arrow IPC stream shard and return it as a (zero-copy) Table."""
    source = pa.memory_map(str(path), "r")
    return pa.ipc.open_stream(source).read_all()


class ShardSet:
    """All shards of a dataset, memory-mapped. Build with :meth:`ShardSet.open`."""

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        tables: list[pa.Table | None],
        remote: RemoteDataset | None = None,
    ) -> None:
        self.root = root
        self.manifest = manifest
        self._tables = tables
        self._remote = remote
        rows = np.fromiter(
            (int(s["rows"]) for s in manifest["shards"]), dtype=np.int64, count=len(tables)
        )
        self._offsets = np.zeros(len(tables) + 1, dtype=np.int64)
        np.cumsum(rows, out=self._offsets[1:])
        self._nonempty = [i for i, n in enumerate(rows.tolist()) if n]
        self._all: pa.Table | None = None
        self._schema: pa.Schema | None = None

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, filesystem=None
    ) -> ShardSet:
        """Open a complete dataset: a local directory, or ``gs://`` / ``s3://`` prefix.

        A remote dataset's manifest is read in place; each shard is downloaded into
        ``cache_dir`` (default ``~/.cache/gradum/shards``) the first time it is needed, checked
        against the manifest's sha256 and size, then memory-mapped like a local one.

        Raises:
            DatasetNotFoundError, NotADatasetError, IncompleteDatasetError, ManifestError,
            UnsafePathError (a shard path leaves the directory), ShardMismatchError (a shard's
            row count, sha256 or size disagrees with the manifest, or schemas differ),
            ShardsError (a shard is missing or unreadable).
        """
        if is_remote(path):
            remote = RemoteDataset(str(path), cache_dir, filesystem)
            manifest = remote.manifest()
            for entry in manifest["shards"]:
                resolve_shard_path(remote.root, entry["path"])  # refuse unsafe paths early
            return cls(remote.root, manifest, [None] * len(manifest["shards"]), remote)
        root = Path(path)
        manifest = read_manifest(root)
        tables = [_load(resolve_shard_path(root, e["path"]), e) for e in manifest["shards"]]
        ss = cls(root, manifest, tables)
        for i in range(len(tables)):
            ss._table(i)  # schema check
        return ss

    def _table(self, i: int) -> pa.Table:
        """Shard ``i``, fetched and mapped on first use (remote), schema checked."""
        table = self._tables[i]
        if table is None:
            entry = self.manifest["shards"][i]
            rel = entry["path"]
            resolve_shard_path(self.root, rel)
            local = self._remote.fetch(rel, entry.get("sha256"), entry.get("bytes"))
            table = self._tables[i] = _load(local, entry)
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema):
            raise ShardMismatchError(
                f"{self.manifest['shards'][i]['path']}: schema differs from the first shard"
            )
        return table

    def _loaded(self) -> list[pa.Table]:
        return [self._table(i) for i in range(len(self._tables))]

    @property
    def location(self) -> str:
        """Where the dataset lives: its directory, or its ``gs://`` / ``s3://`` prefix."""
        return self._remote.uri if self._remote is not None else str(self.root)

    # shape -----------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        """Total rows over all shards."""
        return int(self._offsets[-1])

    def __len__(self) -> int:
        return self.num_rows

    @property
    def num_shards(self) -> int:
        """Number of shards (including empty ones)."""
        return len(self._tables)

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema shared by all shards (an empty schema when there are no shards)."""
        return self._table(0).schema if self._tables else pa.schema([])

    @property
    def column_names(self) -> list[str]:
        """Column names."""
        return list(self.schema.names)

    @property
    def shard_paths(self) -> list[Path]:
        """Absolute paths of the shard files, in order (in the local cache, for a remote
        dataset: fetched first)."""
        if self._remote is not None:
            self._loaded()
        return [resolve_shard_path(self.root, s["path"]) for s in self.manifest["shards"]]

    # data ------------------------------------------------------------------------------
    def table(self, columns: list[str] | None = None) -> pa.Table:
        """The whole set as one chunked Table (zero-copy; one chunk per shard batch)."""
        self._check_columns(columns)
        if not self._tables:
            return self.schema.empty_table()
        tables = self._loaded()
        return pa.concat_tables(tables if columns is None else [t.select(columns) for t in tables])

    def arrow_column(self, name: str) -> pa.ChunkedArray:
        """One column over the whole set as a ChunkedArray (zero-copy)."""
        self._check_columns([name])
        chunks = [c for t in self._loaded() for c in t.column(name).chunks]
        return pa.chunked_array(chunks, type=self.schema.field(name).type)

    def column(self, name: str) -> np.ndarray:
        """One column over the whole set as a numpy array.

        Numeric columns without nulls come back as one contiguous array of their own dtype
        (float32 stays float32), built by a vectorised concatenation; nulls in float columns
        become NaN. Strings and nested types come back as object arrays.
        """
        col = self.arrow_column(name)
        if col.num_chunks == 0:
            return np.empty(0, dtype=_numpy_dtype(col.type))
        if col.num_chunks == 1:
            return col.chunk(0).to_numpy(zero_copy_only=False)
        return col.to_numpy()

    def take(self, indices: Any, columns: list[str] | None = None) -> pa.Table:
        """Rows at global ``indices`` (any order, repeats allowed) as a Table in that order.

        Vectorised: indices are mapped to (shard, local row) with one ``searchsorted``, each
        touched shard is gathered once, and one final ``take`` restores the requested order.

        Raises:
            IndexError: an index is negative or >= num_rows.
        """
        self._check_columns(columns)
        idx = np.asarray(indices, dtype=np.int64).ravel()
        schema = (
            self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        )
        if idx.size == 0:
            return schema.empty_table()
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.num_rows:
            bad = lo if lo < 0 else hi
            raise IndexError(f"index {bad} out of range for a set of {self.num_rows} rows")
        shard = np.searchsorted(self._offsets, idx, side="right") - 1
        order = np.argsort(shard, kind="stable")
        sorted_shard = shard[order]
        local = idx[order] - self._offsets[sorted_shard]
        bounds = np.flatnonzero(np.diff(sorted_shard)) + 1
        if bounds.size >= _MANY_SHARDS:
            # Many shards touched: Arrow's chunked take beats one take per shard.
            return self._combined(columns).take(pa.array(idx)).combine_chunks()
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [idx.size]))
        parts = []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            t = self._table(int(sorted_shard[s]))
            if columns is not None:
                t = t.select(columns)
            parts.append(t.take(pa.array(local[s:e])))
        gathered = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if len(parts) == 1 and np.all(order[1:] >= order[:-1]):
            return gathered.combine_chunks()
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size, dtype=np.int64)
        return gathered.take(pa.array(inverse)).combine_chunks()

    def _combined(self, columns: list[str] | None) -> pa.Table:
        if self._all is None:
            self._all = pa.concat_tables(self._loaded())
        return self._all if columns is None else self._all.select(columns)

    def iter_batches(
        self, batch_size: int | None = None, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Yield RecordBatches in row order; with ``batch_size``, batches of exactly that many
        rows (the last may be shorter), crossing shard boundaries."""
        self._check_columns(columns)
        if batch_size is None:
            for i in self._nonempty:
                t = self._table(i) if columns is None else self._table(i).select(columns)
                yield from t.to_batches()
            return
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        for start in range(0, self.num_rows, batch_size):
            stop = min(start + batch_size, self.num_rows)
            yield self.slice(start, stop - start, columns).combine_chunks().to_batches()[0]

    def slice(self, offset: int, length: int, columns: list[str] | None = None) -> pa.Table:
        """Contiguous rows ``[offset, offset + length)`` as a Table (zero-copy)."""
        self._check_columns(columns)
        offset = max(0, int(offset))
        stop = min(self.num_rows, offset + max(0, int(length)))
        parts = []
        first = int(np.searchsorted(self._offsets, offset, side="right")) - 1
        for i in range(max(first, 0), len(self._tables)):
            a, b = int(self._offsets[i]), int(self._offsets[i + 1])
            if a >= stop:
                break
            lo, hi = max(offset, a), min(stop, b)
            if hi > lo:
                t = self._table(i) if columns is None else self._table(i).select(columns)
                parts.append(t.slice(lo - a, hi - lo))
        if not parts:
            schema = (
                self.schema
                if columns is None
                else pa.schema([self.schema.field(c) for c in columns])
            )
            return schema.empty_table()
        return pa.concat_tables(parts)

    def to_hf_dataset(self) -> Any:
        """A ``datasets.Dataset`` over the same shard files (needs the ``pipeline`` extra)."""
        try:
            import datasets
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "to_hf_dataset needs the 'datasets' package: pip install 'gradum[pipeline]'"
            ) from e
        parts = [datasets.Dataset.from_file(str(p)) for p in self.shard_paths]
        if not parts:
            return datasets.Dataset.from_dict({})
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)

    def _check_columns(self, columns: list[str] | None) -> None:
        if columns is None:
            return
        names = set(self.schema.names)
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise KeyError(
                f"unknown column(s) {', '.join(map(repr, unknown))}; "
                f"columns are: {', '.join(self.schema.names)}"
            )

    def __repr__(self) -> str:
        return f"ShardSet({self.location!r}, rows={self.num_rows}, shards={self.num_shards})"


def _numpy_dtype(dtype: pa.DataType) -> np.dtype:
    try:
        return np.dtype(dtype.to_pandas_dtype())
    except (NotImplementedError, TypeError):
        return np.dtype(object)
