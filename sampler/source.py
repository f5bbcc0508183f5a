"""Column access over the three kinds of source: a dict of arrays, a ``shards.ShardSet``, or a
path to a scored dataset (opened with ``shards.ShardSet.open``; ``shards`` is imported lazily)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


class Source:
    def __init__(self, source: Any) -> None:
        self.shardset: Any = None
        self._columns: dict[str, np.ndarray] = {}
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
            self.num_rows = int(source.num_rows)
        if self.num_rows < 1:
            raise ValueError("Sampler: the source has no rows")

    def has(self, name: str) -> bool:
        if self.shardset is None:
            return name in self._columns
        if name in self._columns:
            return True
        names = getattr(self.shardset, "column_names", None)
        if names is not None and name not in names:
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
