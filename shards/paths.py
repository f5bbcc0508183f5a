"""Path helpers: the fixed layout of a dataset directory and the shard-path safety rule."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .errors import UnsafePathError

MANIFEST_NAME = "manifest.json"
RUN_MARKER_NAME = "run.json"  # written first by a job: a run is under way or was cut short
SHARDS_DIR = "shards"
DEAD_LETTER_DIR = "dead_letter"
CENTROIDS_NAME = "centroids.npy"
INDEX_DIR = "index"


def shard_name(index: int | str) -> str:
    """Relative path of a shard: ``shards/part-00000.arrow`` for a number (``ShardWriter``),
    ``shards/part-KEY.arrow`` for a job's part key (e.g. ``00000012-000003``: input 12, part 3)."""
    if isinstance(index, str):
        return f"{SHARDS_DIR}/part-{index}.arrow"
    return f"{SHARDS_DIR}/part-{index:05d}.arrow"


def resolve_shard_path(root: str | os.PathLike, rel: str) -> Path:
    """Join ``rel`` to ``root``, refusing absolute paths and paths that leave ``root``.

    Raises:
        UnsafePathError: ``rel`` is absolute, empty, contains ``..`` or resolves outside ``root``.
    """
    if not isinstance(rel, str) or not rel:
        raise UnsafePathError(f"shard path {rel!r} is not a non-empty string")
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or os.path.isabs(rel) or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePathError(f"shard path {rel!r} is absolute; shard paths must be relative")
    if ".." in pure.parts:
        raise UnsafePathError(f"shard path {rel!r} leaves the dataset directory")
    root_r = Path(root).resolve()
    full = (root_r / Path(*pure.parts)).resolve()
    if root_r != full and root_r not in full.parents:
        raise UnsafePathError(f"shard path {rel!r} leaves the dataset directory (via a link)")
    return full
