"""Datasets in a bucket (``gs://``, ``s3://``): the manifest and the index read in place, shards
fetched into a bounded local cache (:mod:`shards.cache`) and checked against the manifest's
sha256 before they are served.

Only pyarrow's own filesystems are used, so reading a remote dataset needs the core install
(numpy, pyarrow, torch) and no Beam. How the bucket is reached: :mod:`shards.storage_options`
(options first, then the environment); pass ``fs=`` to use another configured
``pyarrow.fs.FileSystem``.

Every byte read from the bucket is counted per kind (``manifest``, ``index``, ``shards``) in
:attr:`RemoteDataset.read`, with the requests that read them, so a caller can check what a step
cost.

Requests (pyarrow 25, counted in the stores' own logs by ``tests/test_serving_requests.py``):
pyarrow's S3 filesystem sends a HEAD whenever it opens an object (stream or random access; its
Python API takes a path only, not a ``FileInfo`` with the size that would let it skip the
HEAD), and each read of an S3 object is one ranged GET; its GCS stream is one GET however it
is read. So a whole object (a shard, the manifest) is read from S3 in steps of up to
``S3_READ`` bytes, sized by the HEAD's length (HEAD + one GET for a shard of at most
``S3_READ`` bytes, instead of one GET per 8 MiB, or per 256 KiB for ``read()``), and from GCS
as one stream (one GET); the manifest is read without asking first whether it exists (the
listing that tells an incomplete dataset from a missing one runs only when it is missing).
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
STREAM_READ = 8 << 20  # one read of a streamed object (GCS: one GET whatever the reads)
S3_READ = 32 << 20  # one read of an S3 object: one ranged GET (and this much memory, at most)
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
        self._s3 = self.uri.startswith("s3://")
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

    def _copy(self, rel: str, write: Callable[[bytes], Any]) -> None:
        """Object ``rel`` into ``write``, block by block (counted). S3: opened for random
        access, whose open is the HEAD pyarrow sends anyway and gives the size, then one
        ranged GET per ``S3_READ`` bytes (a shard up to that size: HEAD + one GET; an S3
        stream's reads are ranged GETs too, and ``read()`` without a size makes one per
        256 KiB). GCS: a stream, one GET whatever the reads, read ``STREAM_READ`` at a time."""
        path = self._path(rel)
        with self._serial:
            if self._s3:
                with self.fs.open_input_file(path) as src:
                    size, pos = src.size(), 0
                    while pos < size:
                        block = src.read_at(min(S3_READ, size - pos), pos)
                        if not block:  # replaced by a shorter object meanwhile
                            break
                        write(block)
                        pos += len(block)
                        self.count(rel, len(block))
                self.count(rel, 0)  # the HEAD
                return
            with self.fs.open_input_stream(path) as src:
                while block := src.read(STREAM_READ):
                    write(block)
                    self.count(rel, len(block), 0)
            self.count(rel, 0)  # the GET

    def read_bytes(self, rel: str) -> bytes:
        """A whole object (counted)."""
        parts: list[bytes] = []
        self._copy(rel, parts.append)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def open_random(self, rel: str) -> io.RawIOBase:
        """A seekable file object over ``rel`` whose reads are ranged requests (counted): what
        the index reader hands to Parquet, which reads only the footer and the column chunks
        it needs. Against a GCS emulator (``STORAGE_EMULATOR_HOST``) the object is read whole:
        gcp-storage-emulator serves one connection at a time and stalls on pyarrow's ranged
        reads (real GCS serves them)."""
        if self.uri.startswith("gs://") and os.environ.get("STORAGE_EMULATOR_HOST"):
            return io.BytesIO(self.read_bytes(rel))
        native = self.fs.open_input_file(self._path(rel))
        self.count(rel, 0)  # the open: a HEAD on S3, a metadata GET on GCS
        return _CountingFile(native, lambda n: self.count(rel, n))

    def manifest(self) -> dict[str, Any]:
        """The checked manifest; an incomplete or absent dataset raises as locally."""
        import pyarrow.fs as pafs

        try:  # read at once: no request to ask first whether it exists
            data = self.read_bytes(MANIFEST_NAME)
        except FileNotFoundError:
            data = None
        except OSError as e:
            raise ShardsError(f"{self.uri}: cannot reach the bucket: {e}") from e
        if data is None:
            try:
                found = self.fs.get_file_info(pafs.FileSelector(self._base, allow_not_found=True))
            except OSError as e:
                raise ShardsError(f"{self.uri}: cannot reach the bucket: {e}") from e
            if found:
                raise IncompleteDatasetError(
                    f"{self.uri}: incomplete dataset: {MANIFEST_NAME} is missing (the job that "
                    "wrote it did not finish; the manifest is written last)"
                )
            raise DatasetNotFoundError(f"{self.uri}: no such dataset")
        manifest = json.loads(data)
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
        """A function that writes object ``rel`` to a local path (counted; the cache checks
        the file's size and sha256 against the manifest after)."""

        def download(dest: Path) -> None:
            try:
                with open(dest, "wb") as dst:
                    self._copy(rel, dst.write)
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
