"""gradum shards: the on-disk format (Arrow IPC stream shards + manifest.json).

Writer, reader, manifest, validation and the inspection CLI. Imports none of the other
gradum packages. Attributes are loaded lazily so ``import shards.cli`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ShardWriter": "writer",
    "ShardSet": "reader",
    "read_shard": "reader",
    "write_manifest": "manifest",
    "read_manifest": "manifest",
    "build_manifest": "manifest",
    "column_stats": "stats",
    "array_stats": "stats",
    "validate": "validation",
    "write_dataset": "dataset",
    "DeadLetterWriter": "dead_letter",
    "read_dead_letters": "dead_letter",
    "FORMAT_VERSION": "version",
    "ShardsError": "errors",
    "DatasetNotFoundError": "errors",
    "NotADatasetError": "errors",
    "IncompleteDatasetError": "errors",
    "ManifestError": "errors",
    "UnsafePathError": "errors",
    "ShardMismatchError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shards' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
