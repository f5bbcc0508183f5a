"""Object-store servers on loopback, started by the tests themselves (no network, no Docker).

- GCS: ``gcp-storage-emulator`` in this process; Beam's GCS client and pyarrow's find it
  through ``STORAGE_EMULATOR_HOST`` (inherited by the job's worker processes).
- S3: ``moto``'s ``ThreadedMotoServer``; Beam gets it through ``--s3_endpoint_url`` and the
  keys, pyarrow through ``AWS_ENDPOINT_URL`` and the ``AWS_*`` key variables.

A :class:`Store` names its bucket, the extra Beam arguments a job needs, and lists, reads and
writes objects through the store's own client (independent of gradum's code).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

SECRET = "SECRET-gradum-7f3a9c"  # the S3 secret key: must never appear in any output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Store:
    scheme: str
    bucket: str
    beam_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    client: object = None
    # (method, path, query) of every request the server answered, in order (S3 and GCS)
    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def requests_for(self, key: str) -> list[str]:
        """The methods of the requests on object ``key``, in order (S3: ``GET``, ``HEAD``;
        GCS: ``GET`` for its metadata, ``GET media`` for its bytes)."""
        out = []
        for method, path, query in list(self.requests):
            if self.scheme == "s3" and path == f"/{self.bucket}/{key}":
                out.append(method)
            elif self.scheme == "gs" and unquote(path).endswith(f"/b/{self.bucket}/o/{key}"):
                out.append(f"{method} media" if "alt=media" in query else method)
        return out

    def objects_written(self, prefix: str) -> set[str]:
        """Keys under ``prefix`` the server completed an upload of (PUT, or a multipart upload
        completed), from its request log since ``requests`` was last cleared (S3 only)."""
        base = f"/{self.bucket}/{prefix}"
        return {
            path[len(self.bucket) + 2 :]
            for method, path, query in list(self.requests)
            if path.startswith(base)
            and (
                (method == "PUT" and "partNumber" not in query)
                or (method == "POST" and "uploadId" in query)
            )
        }

    def url(self, key: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> None:
        if self.scheme == "s3":
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        else:
            self.client.bucket(self.bucket).blob(key).upload_from_string(data)

    def get(self, key: str) -> bytes:
        if self.scheme == "s3":
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return self.client.bucket(self.bucket).blob(key).download_as_bytes()

    def keys(self, prefix: str = "") -> list[str]:
        if self.scheme == "s3":
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
        return sorted(b.name for b in self.client.list_blobs(self.bucket, prefix=prefix))


@contextlib.contextmanager
def gcs_server(bucket: str = "gradum-gcs") -> Iterator[Store]:
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    lines = logging.getLogger("gcp_storage_emulator.server")  # its request lines: INFO
    lines.setLevel(logging.INFO)
    log = _RequestLog(errors_pass=True)
    lines.addFilter(log)
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = storage.Client(project="test", credentials=AnonymousCredentials())
        store = Store("gs", bucket, [], env, client)
        log.target = store.requests
        yield store
    finally:
        lines.removeFilter(log)
        lines.setLevel(logging.NOTSET)
        server.stop()
        _restore(old)


@contextlib.contextmanager
def s3_server(bucket: str = "gradum-s3") -> Iterator[Store]:
    import boto3
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")
    werkzeug.setLevel(logging.INFO)  # every request is logged: _RequestLog keeps them
    werkzeug.propagate = False
    log = _RequestLog()
    werkzeug.addHandler(log)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "gradum-key",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="gradum-key",
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=bucket)
        beam_args = [
            f"--s3_endpoint_url={endpoint}",
            "--s3_access_key_id=gradum-key",
            f"--s3_secret_access_key={SECRET}",
            "--s3_region_name=us-east-1",
        ]
        store = Store("s3", bucket, beam_args, env, client)
        log.target = store.requests
        yield store
    finally:
        werkzeug.removeHandler(log)
        server.stop()
        _restore(old)


class _RequestLog(logging.Handler):
    """A server's request lines (moto's werkzeug, gcp-storage-emulator's http.server), parsed
    into ``(method, path, query)``. As a handler it records every line; as a logger filter
    (``errors_pass``) it records them and lets only ERROR records through (the emulator's
    INFO request lines would otherwise reach pytest's log capture)."""

    _LINE = re.compile(r'"(GET|PUT|POST|DELETE|HEAD|PATCH) (\S+) HTTP')
    _ANSI = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours some statuses (206)

    def __init__(self, errors_pass: bool = False) -> None:
        super().__init__(logging.INFO)
        self.target: list | None = None
        self.errors_pass = errors_pass

    def emit(self, record: logging.LogRecord) -> None:
        m = self._LINE.search(self._ANSI.sub("", record.getMessage()))
        if m and self.target is not None:
            path, _, query = m.group(2).partition("?")
            self.target.append((m.group(1), path, query))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.errors_pass:
            return super().filter(record)
        self.emit(record)
        return record.levelno >= logging.ERROR


def _restore(old: dict[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
