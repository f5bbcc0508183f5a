"""Column access over the three kinds of source: a dict of arrays, a ``shards.ShardSet``, or a
path to a scored dataset (opened with ``shards.ShardSet.open``; ``shards`` is imported lazily).

A ShardSet's columns come from its index when it holds them (no shard is read: a Sampler over
a bucket dataset builds from a few ranged reads); a column is read once, kept while the
strategy builds from it, and dropped when the strategy releases it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

KEEP = ("difficulty",)  # the Sampler reads it after the strategy: never dropped on release


class Source:
    def __init__(self, source: Any) -> None:
        self.shardset: Any = None
        self._columns: dict[str, np.ndarray] = {}
        self.owned = False  # whether the arrays are ours (read from a ShardSet) or the user's
        if isinstance(source, dict):
            if not source:
                raise ValueError("Sampler: the dict source has no columns")
            lengths = set()
            for name, col in source.items():
                arr = col.detach().cpu().numpy() if hasattr(col, "detach") else np.asarray(col)
                if arr.ndim < 1:
                    raise ValueError(f"Sampler: column {name!r} is not an array")
                self._columns[str(name)] = arr
                lengths.add(arr.shape[0])
            if len(lengths) != 1:
                raise ValueError(f"Sampler: columns have different lengths {sorted(lengths)}")
            self.num_rows = lengths.pop()
        else:
            if isinstance(source, (str, os.PathLike)):
                import shards  # lazy: only path / ShardSet sources need it

                source = shards.ShardSet.open(source)
            if not (hasattr(source, "num_rows") and hasattr(source, "column")):
                raise ValueError(
                    "Sampler: source must be a ShardSet, a dataset path or a dict of arrays, "
                    f"got {type(source).__name__}"
                )
            self.shardset = source
            self.owned = True
            self.num_rows = int(source.num_rows)
        if self.num_rows < 1:
            raise ValueError("Sampler: the source has no rows")

    @property
    def layout(self) -> dict[str, Any] | None:
        """The dataset's layout (``gradum shards reorder``), when it has one."""
        manifest = getattr(self.shardset, "manifest", None)
        layout = manifest.get("layout") if isinstance(manifest, dict) else None
        return layout if isinstance(layout, dict) else None

    def _exists(self, name: str) -> bool:
        has_column = getattr(self.shardset, "has_column", None)
        if has_column is not None:
            return bool(has_column(name))
        names = getattr(self.shardset, "column_names", None)
        return names is None or name in names

    def has(self, name: str) -> bool:
        if self.shardset is None or name in self._columns:
            return name in self._columns
        if not self._exists(name):
            return False
        try:
            self._columns[name] = np.asarray(self.shardset.column(name))
        except (KeyError, ValueError, IndexError):
            return False
        except Exception as e:  # pyarrow raises its own errors for a missing field
            if "field" in str(e).lower() or "column" in str(e).lower():
                return False
            raise
        return True

    def column(self, name: str) -> np.ndarray:
        if not self.has(name):
            raise ValueError(f"Sampler: the source has no column {name!r}")
        return self._columns[name]

    def release(self, name: str) -> None:
        """Drop a column read from a ShardSet (a strategy built what it needed from it)."""
        if self.shardset is not None and name not in KEEP:
            self._columns.pop(name, None)
