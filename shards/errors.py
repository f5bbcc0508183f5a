"""Exceptions raised by the shards package, each with a message a shell user can act on."""

from __future__ import annotations


class ShardsError(Exception):
    """Base class for every error raised by :mod:`shards`."""


class DatasetNotFoundError(ShardsError, FileNotFoundError):
    """The dataset path does not exist."""


class NotADatasetError(ShardsError):
    """The path exists but holds no gradum dataset (no manifest.json, no shards/)."""


class IncompleteDatasetError(ShardsError):
    """shards/ exists but manifest.json does not: the writing job never committed."""


class ManifestError(ShardsError):
    """manifest.json is unreadable, or lacks a key, or names an unknown format version."""


class UnsafePathError(ManifestError):
    """A shard path in the manifest is absolute or leaves the dataset directory."""


class ShardMismatchError(ShardsError):
    """A shard disagrees with the manifest (row count) or with the other shards (schema)."""
