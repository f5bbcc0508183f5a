"""ShardSet: a read-only view over every shard of a dataset, local or in a bucket.

Local: every shard is memory-mapped at open. Remote (``gs://``, ``s3://``): the manifest is
read in place, columns the index holds come from the index parts (ranged reads, no shard
fetched), and shards are fetched into a bounded, shared cache (:mod:`shards.cache`) only
when rows are taken, or ahead of time when a sampler says which ones it will need
(:meth:`ShardSet.prefetch`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import columns as idx_cols
from .errors import ShardMismatchError
from .fetcher import RemoteShards, map_shard
from .manifest import read_manifest
from .paths import resolve_shard_path
from .remote import RemoteDataset, is_remote
from .serving import Checked, Held, ServingMixin
from .storage_options import StorageOptions
from .table_ops import gather, numpy_dtype, slice_parts

log = logging.getLogger("gradum.shards")


def read_shard(path: str | os.PathLike) -> pa.Table:
    """Memory-map one Arrow IPC stream shard and return it as a (zero-copy) Table."""
    source = pa.memory_map(str(path), "r")
    return pa.ipc.open_stream(source).read_all()


class ShardSet(ServingMixin):
    """All shards of a dataset. Build with :meth:`ShardSet.open`."""

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        tables: list[pa.Table | None],
        remote: RemoteDataset | None = None,
        *,
        prefetch_threads: int = 4,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.manifest = manifest
        self._tables = tables
        self._remote = remote
        self._options = dict(options or {})
        rows = np.fromiter(
            (int(s["rows"]) for s in manifest["shards"]), dtype=np.int64, count=len(tables)
        )
        self._offsets = np.zeros(len(tables) + 1, dtype=np.int64)
        np.cumsum(rows, out=self._offsets[1:])
        self._nonempty = [i for i, n in enumerate(rows.tolist()) if n]
        self._all: pa.Table | None = None
        self._schema: pa.Schema | None = None
        self._index_schema: pa.Schema | None = None
        self._footers = idx_cols.Footers()
        self.has_index = idx_cols.has_index(manifest)
        self._shards = (
            RemoteShards(remote, manifest["shards"], prefetch_threads) if remote else None
        )

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        cache_dir: str | os.PathLike | None = None,
        cache_limit: int | str | None = None,
        storage: StorageOptions | None = None,
        filesystem: Any = None,
        prefetch_threads: int = 4,
    ) -> ShardSet:
        """Open a complete dataset: a local directory, or a ``gs://`` / ``s3://`` prefix.

        A remote dataset's manifest and index are read in place; a shard is downloaded into
        ``cache_dir`` (default ``$GRADUM_CACHE/shards`` or ``~/.cache/gradum/shards``) when
        rows are taken from it or when it is prefetched, checked against the manifest's
        sha256 and size, then memory-mapped. ``cache_limit`` (bytes, or ``"20GB"``,
        ``"512MiB"``) bounds the fetched copies: least recently used shards are evicted, never
        one in use. Processes of a host may share ``cache_dir``. ``storage`` holds the bucket
        connection options (else the environment's); ``prefetch_threads`` background fetchers.

        Raises:
            DatasetNotFoundError, NotADatasetError, IncompleteDatasetError, ManifestError,
            UnsafePathError (a shard path leaves the directory), ShardMismatchError (a shard's
            row count, sha256 or size disagrees with the manifest, or schemas differ),
            ShardsError (a shard is missing or unreadable), ValueError (a bad cache_limit).
        """
        options = {
            "cache_dir": cache_dir,
            "cache_limit": cache_limit,
            "storage": storage,
            "prefetch_threads": prefetch_threads,
        }
        if is_remote(path):
            remote = RemoteDataset(
                str(path), cache_dir, filesystem, storage=storage, cache_limit=cache_limit
            )
            manifest = remote.manifest()
            for entry in manifest["shards"]:
                resolve_shard_path(remote.root, entry["path"])  # refuse unsafe paths early
            ss = cls(
                remote.root,
                manifest,
                [None] * len(manifest["shards"]),
                remote,
                prefetch_threads=prefetch_threads,
                options=options,
            )
        else:
            root = Path(path)
            manifest = read_manifest(root)
            tables = [
                map_shard(resolve_shard_path(root, e["path"]), e["rows"], str(root / e["path"]))
                for e in manifest["shards"]
            ]
            ss = cls(root, manifest, tables, options=options)
            for i in range(len(tables)):
                ss._check_schema(i, tables[i])
        if manifest["shards"] and not ss.has_index:
            log.warning(
                "%s: no index (written before gradum wrote one): column() and a Sampler read "
                "whole shards; `gradum shards reorder` writes a copy with an index",
                ss.location,
            )
        return ss

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as "open it again" (DataLoader workers reopen and share the cache)."""
        return (_reopen, (self.location, self._options))

    # shards ----------------------------------------------------------------------------
    def _table(self, i: int) -> pa.Table:
        """Shard ``i`` (a remote one is fetched and kept mapped), schema checked."""
        table = self._tables[i]
        if table is None:
            with self._shards.use(i) as table:
                pass
        self._check_schema(i, table)
        return table

    def _check_schema(self, i: int, table: pa.Table) -> None:
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema):
            raise ShardMismatchError(
                f"{self.manifest['shards'][i]['path']}: schema differs from the first shard"
            )

    def _loaded(self) -> list[pa.Table]:
        return [self._table(i) for i in range(len(self._tables))]

    @property
    def is_remote(self) -> bool:
        return self._remote is not None

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
    def offsets(self) -> np.ndarray:
        """Row offsets: shard i holds rows ``[offsets[i], offsets[i + 1])`` (a copy)."""
        return self._offsets.copy()

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema shared by all shards (an empty schema when there are no shards). On a
        remote dataset only the stream header of the first shard is read."""
        if self._schema is None and self._tables:
            if self._tables[0] is None:
                rel = self.manifest["shards"][0]["path"]
                with self._remote.open_random(rel) as f:
                    self._schema = pa.ipc.open_stream(pa.PythonFile(f, mode="r")).schema
            else:
                self._schema = self._tables[0].schema
        return self._schema if self._schema is not None else pa.schema([])

    @property
    def column_names(self) -> list[str]:
        """Column names."""
        return list(self.schema.names)

    @property
    def index_columns(self) -> list[str]:
        """Columns the index holds (empty without an index)."""
        return list(self._index().names) if self.has_index else []

    def has_column(self, name: str) -> bool:
        """Whether column ``name`` exists; answered from the index when it holds it."""
        return name in self.index_columns or name in self.column_names

    @property
    def shard_paths(self) -> list[Path]:
        """Absolute paths of the shard files, in order (in the local cache, for a remote
        dataset: fetched first)."""
        if self._remote is not None:
            self._loaded()
        return [resolve_shard_path(self.root, s["path"]) for s in self.manifest["shards"]]

    # index -----------------------------------------------------------------------------
    def _index_opener(self, k: int) -> idx_cols.Opener:
        rel = self.manifest["shards"][k]["index"]["path"]
        if self._remote is not None:
            return lambda: self._remote.open_random(rel)
        full = str(resolve_shard_path(self.root, rel))
        return lambda: full

    def _index(self) -> pa.Schema:
        if self._index_schema is None:
            self._index_schema = idx_cols.index_schema(self._index_opener(0), self._footers)
        return self._index_schema

    # data ------------------------------------------------------------------------------
    def table(self, columns: list[str] | None = None) -> pa.Table:
        """The whole set as one chunked Table (zero-copy locally; a remote set fetches every
        shard)."""
        self._check_columns(columns)
        if not self._tables:
            return self.schema.empty_table()
        tables = self._loaded()
        return pa.concat_tables(tables if columns is None else [t.select(columns) for t in tables])

    def arrow_column(self, name: str) -> pa.ChunkedArray:
        """One column over the whole set as a ChunkedArray (zero-copy locally)."""
        self._check_columns([name])
        chunks = [c for t in self._loaded() for c in t.column(name).chunks]
        return pa.chunked_array(chunks, type=self.schema.field(name).type)

    def column(self, name: str) -> np.ndarray:
        """One column over the whole set as a numpy array: from the index when it holds the
        column (no shard read; remote: a few ranged reads per index part), else from the
        shards (a remote set fetches them one at a time).

        Numeric columns without nulls come back as one contiguous array of their own dtype
        (float32 stays float32); nulls in float columns become NaN (integer columns with
        nulls: float64 with NaN). Strings and nested types come back as object arrays.
        """
        if self.has_index and name in self._index().names:
            parts = [
                (self._index_opener(k), int(s["rows"]))
                for k, s in enumerate(self.manifest["shards"])
            ]
            dtype = idx_cols.numpy_dtype(self._index().field(name))
            return idx_cols.read_column(parts, name, dtype, footers=self._footers)
        self._check_columns([name])
        if self._remote is None:
            col = self.arrow_column(name)
            if col.num_chunks == 0:
                return np.empty(0, dtype=numpy_dtype(col.type))
            if col.num_chunks == 1:
                return col.chunk(0).to_numpy(zero_copy_only=False)
            return col.to_numpy()
        return self._remote_column(name)

    def take(self, indices: Any, columns: list[str] | None = None) -> pa.Table:
        """Rows at global ``indices`` (any order, repeats allowed) as a Table in that order.

        Vectorised: indices are mapped to (shard, local row) with one ``searchsorted``, each
        touched shard is gathered once, and one final ``take`` restores the requested order.
        A remote shard is pinned in the cache while its rows are gathered (and after, while it
        stays among the shards this set keeps pinned: see :mod:`shards.fetcher`).

        Raises:
            IndexError: an index is negative or >= num_rows.
        """
        self._check_columns(columns)
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size == 0:  # (the schema only here: a remote set's first take reads no header)
            schema = self.schema
            if columns is not None:
                schema = pa.schema([schema.field(c) for c in columns])
            return schema.empty_table()
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.num_rows:
            bad = lo if lo < 0 else hi
            raise IndexError(f"index {bad} out of range for a set of {self.num_rows} rows")
        combined = self._combined if self._remote is None else None
        return gather(idx, self._offsets, self._use, columns, combined, self._shards_urgent)

    def _use(self, i: int) -> Any:
        if self._tables[i] is not None:
            return Held(self._tables[i])
        return Checked(self, i)

    def _shards_urgent(self, shards: Sequence[int]) -> None:
        if self._shards is not None:
            self._shards.urgent(shards)

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
        """Contiguous rows ``[offset, offset + length)`` as a Table (zero-copy locally)."""
        self._check_columns(columns)
        return slice_parts(self, offset, length, columns)

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


def _reopen(location: str, options: dict[str, Any]) -> ShardSet:
    return ShardSet.open(location, **options)
