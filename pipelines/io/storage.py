"""The one place of the job that knows about storage: local paths, ``gs://`` and ``s3://``.

Every reader and writer of the job (inputs, staging, shards, dead letters, centroids, the
reference LM, the manifest) goes through these functions, which use Beam's ``FileSystems``;
so a local directory and a bucket behave the same.

Commit rule: nothing is renamed on an object store. :func:`write_bytes` uploads an object
once, under its final name, in a single request sequence that becomes visible only when it
completes (GCS resumable upload, S3 multipart upload). On a local disk the same call writes a
hidden temporary file and renames it, so a reader never sees half a file there either.

Offline testing: Beam's GCS client honours ``STORAGE_EMULATOR_HOST``; when that variable is
set, this module makes Beam use an anonymous client at once instead of retrying Google's
default-credential lookup for about 30 s in every process (emulators need no credentials).
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Iterable
from typing import IO

REMOTE_SCHEMES = ("gs://", "s3://")

# Bytes of stored data read through this module in this process (launcher benchmarks).
BYTES_READ = [0]


def is_remote(path: str) -> bool:
    """Whether ``path`` names an object store (``gs://`` or ``s3://``)."""
    return str(path).startswith(REMOTE_SCHEMES)


def _filesystems():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


_S3IO: list = [None, None]  # (the options it was made from, the S3IO)


def _s3io():
    """One Beam ``S3IO`` (one boto3 client) per process and options. Beam's ``S3FileSystem``
    builds a new client for every call, ~150 ms each: most of the job's time on S3."""
    from apache_beam.io.aws import s3io
    from apache_beam.options.pipeline_options import PipelineOptions

    options = _filesystems()._pipeline_options or PipelineOptions([])
    if _S3IO[0] is not options:
        _S3IO[:] = [options, s3io.S3IO(options=options)]
    return _S3IO[1]


def _open(path: str, mode: str):
    if path.startswith("s3://"):
        return _s3io().open(path, mode, mime_type="application/octet-stream")
    from apache_beam.io.filesystems import CompressionTypes

    kind = CompressionTypes.UNCOMPRESSED
    if mode == "rb":
        return _filesystems().open(path, compression_type=kind)
    return _filesystems().create(path, mime_type="application/octet-stream", compression_type=kind)


def _anonymous_gcs_for_emulator() -> None:
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:  # pragma: no cover - apache-beam[gcp] not installed
        return
    # Beam looks credentials up once per process, with ~30 s of retries when none exist.
    with auth._Credentials._credentials_lock:
        if not auth._Credentials._credentials_init:
            auth._Credentials._credentials = None
            auth._Credentials._credentials_init = True


_anonymous_gcs_for_emulator()


def set_options(options) -> None:
    """Hand Beam's pipeline options (S3 endpoint and keys, GCP project) to ``FileSystems`` in
    this process; Beam's workers do the same with the job's options."""
    _filesystems().set_options(options)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` with ``/`` on object stores and the OS separator locally."""
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def exists(path: str) -> bool:
    if path.startswith("s3://"):
        return _s3io().exists(path)
    return _filesystems().exists(path)


def size(path: str) -> int:
    """Size in bytes of one file or object (metadata only)."""
    matches = [m for m in _filesystems().match([path])[0].metadata_list if m.path == path]
    if not matches:  # (an object store lists by prefix: only the exact name counts)
        raise FileNotFoundError(f"{path}: no such file or object")
    return int(matches[0].size_in_bytes)


def match(pattern: str) -> list[tuple[str, int]]:
    """``(path, size)`` of every file or object matching a glob, sorted by path."""
    metadata = _filesystems().match([pattern])[0].metadata_list
    return sorted((m.path, int(m.size_in_bytes)) for m in metadata)


def list_prefix(prefix: str) -> list[tuple[str, int]]:
    """Every file or object under ``prefix`` (a directory), recursively, sorted by path."""
    prefix = prefix.rstrip("/")
    if not is_remote(prefix):
        if not os.path.isdir(prefix):
            return []
        found = []
        for root, _, names in os.walk(prefix):
            for name in names:
                path = os.path.join(root, name)
                found.append((path, os.path.getsize(path)))
        return sorted(found)
    return [(p, s) for p, s in match(prefix + "/**") if p.startswith(prefix + "/")]


def open_read(path: str, *, compressed: bool = False) -> IO[bytes]:
    """A binary file object for reading (seekable when ``compressed`` is False); with
    ``compressed`` the codec is chosen from the name (``.gz``, ``.bz2``, ``.zst``)."""
    if not compressed:
        return _Counted(_open(path, "rb"))
    from apache_beam.io.filesystems import CompressionTypes

    return _Counted(_filesystems().open(path, compression_type=CompressionTypes.AUTO))


class _Counted:
    """A read-only file object that adds the bytes it returns to :data:`BYTES_READ`."""

    def __init__(self, raw) -> None:
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        BYTES_READ[0] += len(data)
        return data

    def readline(self, *args) -> bytes:
        data = self._raw.readline(*args)
        BYTES_READ[0] += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._raw, name)

    def __iter__(self):
        return iter(self.readline, b"")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._raw.close()


def read_bytes(path: str) -> bytes:
    """The whole content of a file or object."""
    with open_read(path) as fh:
        return fh.read()


def write_bytes(path: str, data: bytes | memoryview, *, durable: bool = True) -> None:
    """Write ``data`` as ``path``, visible only once complete (see the module docstring).
    Beam's S3 client cannot upload an empty object (a multipart upload of no part), so an
    empty ``data`` is refused for ``s3://``; the job never writes one.

    ``durable`` (local disk only): fsync before the rename, so the file survives a crash of
    the machine. Scratch that is checked by its content hash before any reuse (staging parts
    and their summaries) passes False: a killed process loses nothing the kernel holds; after
    a machine crash a torn summary fails its digest and a torn staging object its recorded
    size (the part is scored again) or, failing that, its sha256 when it is written."""
    if is_remote(path):
        if not len(data) and path.startswith("s3://"):
            raise ValueError(f"{path}: cannot upload an empty object to S3 through Beam")
        with _open(path, "wb") as fh:
            fh.write(bytes(data))
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def delete(paths: Iterable[str]) -> None:
    """Delete files or objects; missing ones are ignored."""
    paths = list(paths)
    if not paths:
        return
    remote = [p for p in paths if is_remote(p)]
    for p in paths:
        if not is_remote(p):
            try:
                os.remove(p)
            except FileNotFoundError:
                pass
    for i in range(0, len(remote), 500):
        chunk = remote[i : i + 500]
        try:
            _filesystems().delete(chunk)
        except Exception:  # noqa: BLE001 - BeamIOError when some were already gone
            for p in chunk:
                if exists(p):
                    _filesystems().delete([p])


def delete_prefix(prefix: str) -> None:
    """Delete everything under ``prefix`` (a directory locally)."""
    if not is_remote(prefix):
        if os.path.isdir(prefix):
            shutil.rmtree(prefix, ignore_errors=True)
        elif os.path.exists(prefix):
            os.remove(prefix)
        return
    delete(p for p, _ in list_prefix(prefix))


def upload_dir(local_dir: str, dest: str) -> None:
    """Copy every file under ``local_dir`` to ``dest`` (a directory or object prefix)."""
    for root, _, names in os.walk(local_dir):
        for name in sorted(names):
            src = os.path.join(root, name)
            rel = os.path.relpath(src, local_dir).replace(os.sep, "/")
            with open(src, "rb") as fh:
                write_bytes(join(dest, *rel.split("/")), fh.read())


def download_dir(prefix: str, local_dir: str) -> str:
    """Copy every object under ``prefix`` into ``local_dir`` (made complete, then renamed
    into place, so concurrent callers in one machine are safe); returns ``local_dir``."""
    if os.path.isdir(local_dir):
        return local_dir
    objects = list_prefix(prefix)
    if not objects:
        raise FileNotFoundError(f"{prefix}: nothing stored under this prefix")
    tmp = f"{local_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for path, _ in objects:
        rel = path[len(prefix.rstrip("/")) + 1 :]
        target = os.path.join(tmp, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(read_bytes(path))
    os.makedirs(os.path.dirname(local_dir) or ".", exist_ok=True)
    try:
        os.replace(tmp, local_dir)
    except OSError:  # another process of this machine was first
        shutil.rmtree(tmp, ignore_errors=True)
    return local_dir
