"""Datasets in a bucket (``gs://``, ``s3://``): the manifest and the index read in place, shards
fetched into a bounded local cache (:mod:`shards.cache`) and checked against the manifest's
sha256 before they are served.

Only pyarrow's own filesystems are used, so reading a remote dataset needs the core install
(numpy, pyarrow, torch) and no Beam. How the bucket is reached: :mod:`shards.storage_options`
(options first, then the environment); pass ``fs=`` to use another configured
``pyarrow.fs.FileSystem``.

Every byte read from the bucket is counted per kind (``manifest``, ``index``, ``shards``) in
:attr:`RemoteDataset.read`, so a caller can check what a step cost.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache import Entry, ShardCache
from .errors import DatasetNotFoundError, IncompleteDatasetError, ShardsError
from .manifest import check_manifest
from .paths import INDEX_DIR, MANIFEST_NAME
from .storage_options import SCHEMES, StorageOptions, is_remote
from .storage_options import filesystem as _filesystem

__all__ = ["SCHEMES", "RemoteDataset", "default_cache_dir", "filesystem", "is_remote"]
_CHUNK = 8 << 20
_EMULATOR_LOCK = threading.RLock()


def default_cache_dir() -> Path:
    """``$GRADUM_CACHE`` or ``~/.cache/gradum``, then ``/shards``."""
    base = os.environ.get("GRADUM_CACHE") or os.path.join(Path.home(), ".cache", "gradum")
    return Path(base) / "shards"


def filesystem(uri: str, storage: StorageOptions | None = None) -> Any:
    """A pyarrow filesystem for ``uri``'s scheme (see :mod:`shards.storage_options`)."""
    return _filesystem(uri, storage)


class RemoteDataset:
    """A dataset under ``uri``: its manifest, index parts and shards (through the cache)."""

    def __init__(
        self,
        uri: str,
        cache_dir: str | os.PathLike | None = None,
        fs: Any = None,
        *,
        storage: StorageOptions | None = None,
        cache_limit: int | str | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.storage = storage
        self.fs = fs if fs is not None else filesystem(self.uri, storage)
        self._base = self.uri.split("://", 1)[1]
        key = hashlib.sha1(self.uri.encode()).hexdigest()[:16]
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.root = self.cache_dir / key
        self.cache = ShardCache(self.cache_dir, cache_limit)
        self._lock = threading.Lock()
        self.read = {"manifest": 0, "index": 0, "shards": 0, "requests": 0}
        # gcp-storage-emulator serves one connection at a time: requests from several threads
        # (prefetch) would wait on each other's idle keep-alive connections; one at a time
        emulated = self.uri.startswith("gs://") and os.environ.get("STORAGE_EMULATOR_HOST")
        self._serial = _EMULATOR_LOCK if emulated else contextlib.nullcontext()

    def _path(self, rel: str) -> str:
        return f"{self._base}/{rel}"

    def _kind(self, rel: str) -> str:
        if rel == MANIFEST_NAME:
            return "manifest"
        return "index" if rel.startswith(f"{INDEX_DIR}/") else "shards"

    def count(self, rel: str, nbytes: int, requests: int = 1) -> None:
        with self._lock:
            self.read[self._kind(rel)] += nbytes
            self.read["requests"] += requests

    def read_bytes(self, rel: str) -> bytes:
        """A whole object (counted)."""
        with self._serial, self.fs.open_input_stream(self._path(rel)) as stream:
            data = stream.read()
        self.count(rel, len(data))
        return data

    def open_random(self, rel: str) -> io.RawIOBase:
        """A seekable file object over ``rel`` whose reads are ranged requests (counted): what
        the index reader hands to Parquet, which reads only the footer and the column chunks
        it needs. Against a GCS emulator (``STORAGE_EMULATOR_HOST``) the object is read whole:
        gcp-storage-emulator serves one connection at a time and stalls on pyarrow's ranged
        reads (real GCS serves them)."""
        if self.uri.startswith("gs://") and os.environ.get("STORAGE_EMULATOR_HOST"):
            return io.BytesIO(self.read_bytes(rel))
        return _CountingFile(self.fs.open_input_file(self._path(rel)), lambda n: self.count(rel, n))

    def manifest(self) -> dict[str, Any]:
        """The checked manifest; an incomplete or absent dataset raises as locally."""
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(self._path(MANIFEST_NAME))
        except OSError as e:
            raise ShardsError(f"{self.uri}: cannot reach the bucket: {e}") from e
        if info.type != pafs.FileType.File:
            found = self.fs.get_file_info(pafs.FileSelector(self._base, allow_not_found=True))
            if found:
                raise IncompleteDatasetError(
                    f"{self.uri}: incomplete dataset: {MANIFEST_NAME} is missing (the job that "
                    "wrote it did not finish; the manifest is written last)"
                )
            raise DatasetNotFoundError(f"{self.uri}: no such dataset")
        manifest = json.loads(self.read_bytes(MANIFEST_NAME))
        check_manifest(manifest, f"{self.uri}/{MANIFEST_NAME}")
        return manifest

    def object_size(self, rel: str) -> int | None:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self._path(rel))
        return info.size if info.type == pafs.FileType.File else None

    def entry(self, rel: str) -> Entry:
        """The cache entry of ``rel`` (its local path, stamp and lock)."""
        return Entry(self.root / rel, f"{self.uri}/{rel}")

    def downloader(self, rel: str) -> Callable[[Path], None]:
        """A function that writes object ``rel`` to a local path (counted)."""

        def download(dest: Path) -> None:
            try:
                with (
                    self._serial,
                    self.fs.open_input_stream(self._path(rel)) as src,
                    open(dest, "wb") as dst,
                ):
                    while block := src.read(_CHUNK):
                        dst.write(block)
                        self.count(rel, len(block), 0)
                self.count(rel, 0, 1)
            except FileNotFoundError as e:
                raise ShardsError(
                    f"{self.uri}/{rel}: shard listed in the manifest is missing"
                ) from e

        return download

    def fetch(self, rel: str, sha256: str | None, size: int | None = None) -> Path:
        """The local copy of ``rel``, downloaded and verified on first use (not pinned: a
        bounded cache may evict it later)."""
        entry = self.entry(rel)
        if self.cache.fill(entry, sha256, size, self.downloader(rel)):
            self.cache.evict()
        return entry.data


class _CountingFile(io.RawIOBase):
    """A read-only, seekable Python file over a pyarrow random-access file; each read is one
    ranged request, reported to ``on_read``."""

    def __init__(self, native: Any, on_read: Callable[[int], None]) -> None:
        self._f, self._on_read, self._pos = native, on_read, 0
        self._size = native.size()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), max(0, self._size - self._pos))
        if n == 0:
            return 0
        data = self._f.read_at(n, self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        self._on_read(len(data))
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()
