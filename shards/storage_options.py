"""How to reach a bucket: one set of connection options for every command that takes a
``gs://`` or ``s3://`` path (``gradum shards ...``, ``gradum preview``, the report,
``ShardSet.open``) and, through :meth:`StorageOptions.beam_args`, for ``gradum score``.

Options (the names Beam uses, so a command line works for both):

- ``--s3_endpoint_url URL``: an S3-compatible endpoint (MinIO, moto, Ceph ...);
- ``--s3_access_key_id`` / ``--s3_secret_access_key``: S3 keys (give both or neither);
- ``--s3_region_name``: the S3 region;
- ``--project``: the Google Cloud project (GCS).

Anything not given comes from the environment, as the AWS and Google clients read it:
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``,
``~/.aws``; ``STORAGE_EMULATOR_HOST`` (a GCS emulator: anonymous), Google's default
credentials. The secret key is never printed: ``repr`` masks it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any

SCHEMES = ("gs://", "s3://")
_HELP = {
    "s3_endpoint_url": "S3-compatible endpoint, e.g. http://127.0.0.1:9000 "
    "(default: $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL, else AWS)",
    "s3_access_key_id": "S3 access key id (default: $AWS_ACCESS_KEY_ID, ~/.aws, instance role)",
    "s3_secret_access_key": "S3 secret access key (default: $AWS_SECRET_ACCESS_KEY, ...)",
    "s3_region_name": "S3 region (default: $AWS_REGION / $AWS_DEFAULT_REGION)",
    "project": "Google Cloud project for gs:// (default: Google's default credentials)",
}


def is_remote(path: Any) -> bool:
    """Whether ``path`` names an object store (``gs://`` or ``s3://``)."""
    return isinstance(path, str) and path.startswith(SCHEMES)


@dataclass(frozen=True)
class StorageOptions:
    """Connection options for ``gs://`` / ``s3://``; None means "from the environment"."""

    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_region_name: str | None = None
    project: str | None = None

    def __post_init__(self) -> None:
        url = self.s3_endpoint_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"--s3_endpoint_url must start with http:// or https://, got {url!r}")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "give both --s3_access_key_id and --s3_secret_access_key, or neither "
                "(then the environment's or ~/.aws credentials are used)"
            )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 's3_secret_access_key' else getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) is not None
        )
        return f"StorageOptions({shown})"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StorageOptions:
        """The options a parser built with :func:`add_storage_arguments` parsed."""
        return cls(**{f.name: getattr(args, f.name, None) for f in fields(cls)})

    def beam_args(self) -> list[str]:
        """The same options as Beam pipeline arguments (for ``gradum score``)."""
        return [
            f"--{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) is not None
        ]

    def filesystem(self, uri: str) -> Any:
        """A ``pyarrow.fs`` filesystem for ``uri``'s scheme: these options first, then the
        environment (see the module docstring)."""
        import pyarrow.fs as pafs

        if uri.startswith("gs://"):
            emulator = os.environ.get("STORAGE_EMULATOR_HOST")
            kwargs: dict[str, Any] = {}
            if self.project:
                kwargs["project_id"] = self.project
            if emulator:
                host, scheme = _endpoint(emulator)
                return pafs.GcsFileSystem(
                    anonymous=True, endpoint_override=host, scheme=scheme, **kwargs
                )
            return pafs.GcsFileSystem(**kwargs)
        if not uri.startswith("s3://"):
            raise ValueError(f"{uri!r} is not a gs:// or s3:// path")
        kwargs = {}
        endpoint = (
            self.s3_endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        if endpoint:
            kwargs["endpoint_override"], kwargs["scheme"] = _endpoint(endpoint)
        region = (
            self.s3_region_name
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        )
        if region:
            kwargs["region"] = region
        if self.s3_access_key_id is not None:
            kwargs["access_key"] = self.s3_access_key_id
            kwargs["secret_key"] = self.s3_secret_access_key
        return pafs.S3FileSystem(**kwargs)


def _endpoint(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    return (rest.rstrip("/"), scheme) if sep else (url, "https")


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--s3_endpoint_url``, ``--s3_access_key_id``, ``--s3_secret_access_key``,
    ``--s3_region_name`` and ``--project`` (dash spellings accepted too) in one group."""
    group = parser.add_argument_group(
        "bucket connection (gs:// and s3://; unset options come from the environment)"
    )
    for name, text in _HELP.items():
        flags = [f"--{name}"]
        if "_" in name:
            flags.append(f"--{name.replace('_', '-')}")
        group.add_argument(*flags, dest=name, metavar="VALUE", default=None, help=text)


def filesystem(uri: str, storage: StorageOptions | None = None) -> Any:
    """``(storage or StorageOptions()).filesystem(uri)``."""
    return (storage or StorageOptions()).filesystem(uri)
