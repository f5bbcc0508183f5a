"""Datasets in a bucket (``gs://``, ``s3://``): the manifest read in place, shards fetched into a
local cache on first use and checked against the manifest's sha256 before they are served.

Only pyarrow's own filesystems are used, so reading a remote dataset needs the core install
(numpy, pyarrow, torch) and no Beam:

- ``gs://``: ``pyarrow.fs.GcsFileSystem`` with Google's default credentials; when
  ``STORAGE_EMULATOR_HOST`` is set (an emulator, as in the tests), anonymous against it.
- ``s3://``: ``pyarrow.fs.S3FileSystem`` with the AWS default credential chain; the endpoint
  from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` when set, the region from
  ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.

Pass ``filesystem=`` to use another configured ``pyarrow.fs.FileSystem`` instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import DatasetNotFoundError, IncompleteDatasetError, ShardMismatchError, ShardsError
from .manifest import check_manifest
from .paths import MANIFEST_NAME

SCHEMES = ("gs://", "s3://")
_CHUNK = 8 << 20


def is_remote(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(SCHEMES)


def default_cache_dir() -> Path:
    """``$GRADUM_CACHE`` or ``~/.cache/gradum``, then ``/shards``."""
    base = os.environ.get("GRADUM_CACHE") or os.path.join(Path.home(), ".cache", "gradum")
    return Path(base) / "shards"


def _endpoint(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    return (rest, scheme) if sep else (url, "https")


def filesystem(uri: str):
    """A pyarrow filesystem for ``uri``'s scheme, configured from the environment."""
    import pyarrow.fs as pafs

    if uri.startswith("gs://"):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            host, scheme = _endpoint(emulator)
            return pafs.GcsFileSystem(anonymous=True, endpoint_override=host, scheme=scheme)
        return pafs.GcsFileSystem()
    kwargs: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_override"], kwargs["scheme"] = _endpoint(endpoint)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


class RemoteDataset:
    """A dataset under ``uri``: its manifest, and its shards through a local cache."""

    def __init__(self, uri: str, cache_dir: str | os.PathLike | None = None, fs=None) -> None:
        self.uri = uri.rstrip("/")
        self.fs = fs if fs is not None else filesystem(self.uri)
        self._base = self.uri.split("://", 1)[1]
        key = hashlib.sha1(self.uri.encode()).hexdigest()[:16]
        self.root = Path(cache_dir or default_cache_dir()) / key

    def _path(self, rel: str) -> str:
        return f"{self._base}/{rel}"

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self._path(rel)) as stream:
            return stream.read()

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

    def fetch(self, rel: str, sha256: str | None, size: int | None = None) -> Path:
        """The local copy of shard ``rel``: downloaded on first use, its sha256 checked against
        ``sha256`` before it is kept; a copy whose check fails is deleted and refused."""
        local = self.root / rel
        stamp = local.with_name(f".{local.name}.sha256")
        if local.is_file() and stamp.is_file():
            st = local.stat()
            if stamp.read_text() == f"{sha256} {st.st_size} {st.st_mtime_ns}":
                return local
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part-{os.getpid()}")
        digest = hashlib.sha256()
        try:
            with self.fs.open_input_stream(self._path(rel)) as src, open(tmp, "wb") as dst:
                while block := src.read(_CHUNK):
                    digest.update(block)
                    dst.write(block)
        except FileNotFoundError as e:
            tmp.unlink(missing_ok=True)
            raise ShardsError(f"{self.uri}/{rel}: shard listed in the manifest is missing") from e
        got = digest.hexdigest()
        if sha256 and got != sha256:
            tmp.unlink(missing_ok=True)
            raise ShardMismatchError(
                f"{self.uri}/{rel}: sha256 {got[:12]}... does not match the manifest's "
                f"{sha256[:12]}...; the object is corrupt or was modified: not served"
            )
        if size is not None and tmp.stat().st_size != int(size):
            tmp.unlink(missing_ok=True)
            raise ShardMismatchError(
                f"{self.uri}/{rel}: {tmp.stat().st_size} bytes, manifest says {size}: not served"
            )
        os.replace(tmp, local)
        st = local.stat()
        stamp.write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}")
        return local
