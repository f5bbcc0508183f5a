"""The shards of a remote dataset as memory-mapped tables, through the bounded cache.

:meth:`RemoteShards.use` pins a shard (a shared lock: nothing evicts it) for as long as a
``with`` block uses it, downloading it first when it is not cached; a use that has to wait
for a download is a *stall*, counted with the time it waited. Mapped tables are kept for
reuse while their file is still the cached one (same inode) and while the bytes kept mapped
stay within the cache limit. :meth:`RemoteShards.plan` hands the order of the next shards to
the background :class:`~shards.prefetch.Prefetcher`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import ShardMismatchError, ShardsError
from .prefetch import Prefetcher
from .remote import RemoteDataset


def map_shard(path: str | os.PathLike, rows: int, label: str) -> pa.Table:
    """Memory-map one Arrow IPC stream shard, checking its row count against the manifest."""
    try:
        table = pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all()
    except FileNotFoundError as e:
        raise ShardsError(f"{label}: shard listed in the manifest is missing") from e
    except (OSError, pa.ArrowInvalid) as e:
        raise ShardsError(f"{label}: unreadable shard (truncated or corrupt): {e}") from e
    if table.num_rows != int(rows):
        raise ShardMismatchError(f"{label}: has {table.num_rows} rows, manifest says {rows}")
    return table


class RemoteShards:
    """Shards ``entries`` (the manifest's list) of ``remote``; ``threads`` prefetch workers."""

    def __init__(self, remote: RemoteDataset, entries: list[dict[str, Any]], threads: int = 4):
        self.remote, self.entries = remote, entries
        self.cache = remote.cache
        self._mapped: OrderedDict[int, tuple[pa.Table, int, int]] = OrderedDict()
        self._mapped_bytes = 0
        self._lock = threading.Lock()
        self.stats = {"uses": 0, "stalls": 0, "stall_seconds": 0.0}
        self.prefetcher = Prefetcher(
            self._prefetch_one,
            lambda i: self.remote.entry(self.entries[i]["path"]).valid(*self._check(i)),
            lambda i: int(self.entries[i].get("bytes") or 0),
            self.cache.limit,
            threads,
        )
        self._by_path = {remote.root / e["path"]: i for i, e in enumerate(entries)}
        self.cache.on_evict = self._evicted

    def _check(self, i: int) -> tuple[str | None, int | None]:
        e = self.entries[i]
        return e.get("sha256"), (int(e["bytes"]) if "bytes" in e else None)

    def _prefetch_one(self, i: int) -> None:
        rel = self.entries[i]["path"]
        entry = self.remote.entry(rel)
        if self.cache.fill(entry, *self._check(i), self.remote.downloader(rel)):
            self.cache.evict()

    def _evicted(self, path: Path) -> None:
        i = self._by_path.get(path)
        if i is not None:
            self.prefetcher.forget(i)
            with self._lock:
                self._drop(i)

    def _drop(self, i: int) -> None:
        old = self._mapped.pop(i, None)
        if old is not None:
            self._mapped_bytes -= old[2]

    @contextlib.contextmanager
    def use(self, i: int) -> Iterator[pa.Table]:
        """Shard ``i`` as a mapped table, pinned in the cache inside the block."""
        rel = self.entries[i]["path"]
        entry = self.remote.entry(rel)
        t0 = time.perf_counter()
        pin, hit = self.cache.pin(entry, *self._check(i), self.remote.downloader(rel))
        waited = time.perf_counter() - t0
        try:
            with self._lock:
                self.stats["uses"] += 1
                if not hit:
                    self.stats["stalls"] += 1
                    self.stats["stall_seconds"] += waited
            yield self._map(i, pin.path, f"{self.remote.uri}/{rel}")
        finally:
            pin.release()

    def _map(self, i: int, path: Path, label: str) -> pa.Table:
        ino = os.stat(path).st_ino
        with self._lock:
            kept = self._mapped.get(i)
            if kept is not None and kept[1] == ino:
                self._mapped.move_to_end(i)
                return kept[0]
        table = map_shard(path, self.entries[i]["rows"], label)
        size = int(self.entries[i].get("bytes") or table.nbytes)
        with self._lock:
            self._drop(i)
            self._mapped[i] = (table, ino, size)
            self._mapped_bytes += size
            limit = self.cache.limit
            while limit is not None and self._mapped_bytes > limit and len(self._mapped) > 1:
                self._drop(next(iter(self._mapped)))
        return table

    def plan(self, shards: Sequence[int]) -> None:
        """Fetch these shards in the background, in this order (replaces the last plan), and
        evict them last."""
        self.prefetcher.plan(shards)
        self.cache.protect(
            {self.remote.root / self.entries[s]["path"]: k for k, s in enumerate(shards)}
        )

    def urgent(self, shards: Sequence[int]) -> None:
        """Start fetching shards a take() needs now, in parallel."""
        missing = [
            s
            for s in shards
            if not self.remote.entry(self.entries[s]["path"]).valid(*self._check(s))
        ]
        if len(missing) > 1:
            self.prefetcher.urgent(missing)

    def close(self) -> None:
        self.prefetcher.close()
        with self._lock:
            self._mapped.clear()
            self._mapped_bytes = 0
