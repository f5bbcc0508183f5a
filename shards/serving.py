"""The serving side of a ShardSet: which shards rows live in, background prefetch, counters,
and the context managers ``take`` uses to hold a shard while it gathers rows from it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .fetcher import RemoteShards
from .table_ops import numpy_dtype


class ServingMixin:
    """Methods of :class:`shards.ShardSet` for serving (see that class)."""

    _shards: RemoteShards | None

    def _remote_column(self, name: str) -> np.ndarray:
        parts = []
        for i in range(self.num_shards):
            with self._shards.use(i) as t:
                self._check_schema(i, t)
                parts.append(t.column(name).to_numpy())
        if not parts:
            return np.empty(0, dtype=numpy_dtype(self.schema.field(name).type))
        return np.concatenate(parts)

    def shards_of(self, indices: Any) -> np.ndarray:
        """The shards holding rows ``indices``, each once, in order of first appearance."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        shard = np.searchsorted(self._offsets, idx, side="right") - 1
        _, first = np.unique(shard, return_index=True)
        return shard[np.sort(first)]

    def prefetch(self, shards: Sequence[int]) -> None:
        """Fetch these shards in the background, in this order, as far as the cache limit
        allows, replacing the previous plan; keep them cached in preference to others. A
        no-op for a local dataset."""
        if self._shards is not None:
            self._shards.plan([int(s) for s in shards])

    def wait_prefetched(self, timeout: float = 60.0) -> bool:
        """Block until the planned prefetches have landed (tests, benchmarks)."""
        return True if self._shards is None else self._shards.prefetcher.wait_idle(timeout)

    def stats(self) -> dict[str, Any]:
        """Serving counters: bytes read from the bucket per kind and requests; cache hits,
        misses, downloads, evictions; stalls (takes that waited for a download) and their
        seconds; prefetched shards. All zero for a local dataset."""
        if self._remote is None:
            return {"remote": False}
        out: dict[str, Any] = {"remote": True, "read": dict(self._remote.read)}
        out.update(self._remote.cache.stats)
        out.update(self._shards.stats)
        out["prefetched"] = self._shards.prefetcher.fetched
        out["prefetch_errors"] = list(self._shards.prefetcher.errors)
        return out

    def close(self) -> None:
        """Stop background fetching and release the shards kept pinned (a remote set); the
        set stays usable."""
        if self._shards is not None:
            self._shards.close()
            self._shards = RemoteShards(
                self._remote, self.manifest["shards"], self._options["prefetch_threads"]
            )


class Held:
    """A local shard: always mapped, nothing to pin."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __enter__(self) -> pa.Table:
        return self.table

    def __exit__(self, *exc: object) -> None:
        return None


class Checked:
    """A remote shard pinned for the duration of the block, its schema checked once while it
    stays mapped."""

    def __init__(self, ss: Any, i: int) -> None:
        self.ss, self.i = ss, i
        self._held: Any = None

    def __enter__(self) -> pa.Table:
        held = self._held = self.ss._shards.hold(self.i)
        if not held.checked:
            try:
                self.ss._check_schema(self.i, held.table)
            except BaseException:
                self.ss._shards.leave(held)
                raise
            held.checked = True
        return held.table

    def __exit__(self, *exc: object) -> None:
        self.ss._shards.leave(self._held)
