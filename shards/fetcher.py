"""The shards of a remote dataset as memory-mapped tables, through the bounded cache.

:meth:`RemoteShards.use` gives a shard pinned in the cache (a shared lock: nothing evicts it)
for as long as a ``with`` block uses it, downloading it first when it is not cached; a use that
has to wait for a download is a *stall*, counted with the time it waited.

Kept pins: the shards a process used last stay pinned and mapped after their block, in an LRU
of at most the holder's share of the cache limit (``ShardCache.hold_share``: the limit divided
by the live holders of the cache directory, recounted every ``REFRESH`` seconds) and at most
``MAX_HELD`` shards. A use of a kept shard does no system call: no lock file, no ``flock``, no
stat, no stamp check; nothing can replace or evict the file while its shared lock is held, so
it is still the verified file. A shard leaves the LRU when the share is exceeded (least
recently used first) or when a prefetch plan does not list it (the plan's shards get the
share); once no block uses it, its lock is released and its stamp set to its last use, so
other processes' LRU sees when it was last needed. A process waiting for a kept shard's
exclusive lock (a download of another version, ``gradum shards validate``) gets it: kept pins
of its own process are let go at once, and a background thread of each holder lets go,
every ``REFRESH`` seconds, the kept shards whose want marker it finds
(``shards.cache.exclusive``). :meth:`RemoteShards.plan`
hands the order of the next shards to the background :class:`~shards.prefetch.Prefetcher`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from .cache import Entry, Pin, _touch, add_keeper, wanted
from .errors import ShardMismatchError, ShardsError
from .prefetch import Prefetcher
from .remote import RemoteDataset

MAX_HELD = 64  # kept pins (one open lock file each) per RemoteShards
REFRESH = 1.0  # seconds between counts of the cache's holders (the share of kept pins)


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


@dataclass
class _Held:
    """A shard pinned and mapped: ``users`` blocks use it now; ``dropped``: out of the LRU,
    released when its last user leaves."""

    table: pa.Table
    size: int
    pin: Pin
    entry: Entry
    users: int = 0
    used_ns: int = 0
    dropped: bool = False
    checked: bool = False  # the ShardSet checked its schema


class RemoteShards:
    """Shards ``entries`` (the manifest's list) of ``remote``; ``threads`` prefetch workers."""

    def __init__(self, remote: RemoteDataset, entries: list[dict[str, Any]], threads: int = 4):
        self.remote, self.entries = remote, entries
        self.cache = remote.cache
        self._held: OrderedDict[int, _Held] = OrderedDict()
        self._held_bytes = 0
        self._holder: Any = None  # this set's registration as a holder of kept pins
        self._holder_pid = 0
        self._share: int | None = None
        self._counted = -float("inf")
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
        self._watching = False  # the thread that lets wanted kept shards go runs
        self._closed = False
        add_keeper(self)

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
        if i is not None:  # (never a kept shard: it is pinned)
            self.prefetcher.forget(i)

    # -- use -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def use(self, i: int) -> Iterator[pa.Table]:
        """Shard ``i`` as a mapped table, pinned in the cache inside the block (and after it,
        while it stays in this set's LRU of kept pins)."""
        held = self.hold(i)
        try:
            yield held.table
        finally:
            self.leave(held)

    def hold(self, i: int) -> _Held:
        """Shard ``i`` pinned and mapped, with one more user: give it back with
        :meth:`leave` (what :meth:`use` does, without a generator)."""
        held = self._reuse(i)
        return held if held is not None else self._acquire(i)

    def held(self) -> list[int]:
        """The shards kept pinned, least recently used first."""
        with self._lock:
            return list(self._held)

    def _reuse(self, i: int) -> _Held | None:
        """A kept shard, with one more user: no system call (the share is recounted by the
        watching thread, :func:`_watch`)."""
        with self._lock:
            held = self._held.get(i)
            if held is not None:
                held.users += 1
                self._held.move_to_end(i)
                self.stats["uses"] += 1
        if held is not None:
            self.cache._count(hits=1)
        return held

    def _acquire(self, i: int) -> _Held:
        """Pin shard ``i`` (downloading it if needed), map it and keep it in the LRU."""
        rel = self.entries[i]["path"]
        entry = self.remote.entry(rel)
        t0 = time.perf_counter()
        pin, hit = self.cache.pin(entry, *self._check(i), self.remote.downloader(rel))
        waited = time.perf_counter() - t0
        try:
            table = map_shard(pin.path, self.entries[i]["rows"], f"{self.remote.uri}/{rel}")
        except BaseException:
            pin.release()
            raise
        size = int(self.entries[i].get("bytes") or table.nbytes)
        new = _Held(table, size, pin, entry, users=1)
        keep = not wanted(entry)  # another process waits to replace it: not kept
        watch = False
        with self._lock:
            self.stats["uses"] += 1
            if not hit:
                self.stats["stalls"] += 1
                self.stats["stall_seconds"] += waited
            held = self._held.get(i)
            if held is None and (not keep or self._closed):
                held, new.dropped, release = new, True, []  # released when the block ends
            elif held is None:  # keep it (the LRU may drop it again at once: too big a share)
                self._held[i] = held = new
                self._held_bytes += size
                release = self._trim(recount=time.monotonic() - self._counted > REFRESH)
                watch = not self._watching
                self._watching = True
            else:  # another thread kept it meanwhile: use that one, drop this pin
                held.users += 1
                self._held.move_to_end(i)
                new.dropped, new.users = True, 0
                release = [new]
        self._unpin(release)
        if watch:
            threading.Thread(
                target=_watch, args=(weakref.ref(self),), name="gradum-keep", daemon=True
            ).start()
        return held

    def let_go(self, path: Path) -> None:
        """Release the kept pin on ``path`` (at once, or when the block using it ends)."""
        i = self._by_path.get(path)
        with self._lock:
            release = [self._drop(i)] if i in self._held else []
        self._unpin([h for h in release if h.users == 0])

    def _let_go_wanted(self) -> bool:
        """Let go the kept shards another process waits for and refresh the share; False
        once nothing is kept (the watching thread then ends)."""
        with self._lock:
            kept = list(self._held.items())
        gone = [i for i, h in kept if wanted(h.entry)]
        with self._lock:
            release = [self._drop(i) for i in gone if i in self._held]
            release += self._trim(recount=True)
            if not self._held or self._closed:
                self._watching = False
                running = False
            else:
                running = True
        self._unpin([h for h in release if h.users == 0])
        return running

    def leave(self, held: _Held) -> None:
        """One user less (see :meth:`hold`)."""
        with self._lock:
            held.users -= 1
            held.used_ns = time.time_ns()
            last = held.dropped and held.users == 0
        if last:
            self._unpin([held])

    def _trim(self, recount: bool) -> list[_Held]:
        """Drop least recently used kept shards beyond the share (call with the lock held);
        returns those to unpin now (no user left); the others go when their last user
        leaves."""
        if recount or self._counted == -float("inf"):
            self._recount()
        share = self._share
        out = []
        while self._held and (
            (share is not None and self._held_bytes > share) or len(self._held) > MAX_HELD
        ):
            held = self._drop(next(iter(self._held)))
            if held.users == 0:
                out.append(held)
        return out

    def _recount(self) -> None:
        """This set's share of kept pins (registering it as a holder, once per process)."""
        self._counted = time.monotonic()
        if self.cache.limit is None:
            self._share = None
            return
        if self._holder is None or self._holder_pid != os.getpid():
            self._holder = self.cache.register()
            self._holder_pid = os.getpid()
        self._share = self.cache.hold_share()

    def _unpin(self, dropped: list[_Held]) -> None:
        for held in dropped:
            if held.used_ns:  # the LRU clock other processes see: this shard's last use
                _touch(held.entry.stamp, held.used_ns)
            held.pin.release()

    # -- planning --------------------------------------------------------------------------
    def plan(self, shards: Sequence[int]) -> None:
        """Fetch these shards in the background, in this order (replaces the last plan), and
        evict them last. Kept shards the plan does not list are released: their share of the
        limit goes to the shards it does."""
        planned = set(shards)
        with self._lock:
            gone = [i for i in self._held if i not in planned]
            release = [h for h in map(self._drop, gone) if h.users == 0]
        self._unpin(release)
        self.prefetcher.plan(shards)
        self.cache.protect(
            {self.remote.root / self.entries[s]["path"]: k for k, s in enumerate(shards)}
        )

    def _drop(self, i: int) -> _Held:
        """Take shard ``i`` out of the LRU (call with the lock held)."""
        held = self._held.pop(i)
        self._held_bytes -= held.size
        held.dropped = True
        return held

    def urgent(self, shards: Sequence[int]) -> None:
        """Start fetching shards a take() needs now, in parallel (kept shards are cached:
        not checked)."""
        with self._lock:
            kept = [s for s in shards if s in self._held]
        if len(shards) - len(kept) < 2:
            return
        kept_set = set(kept)
        missing = [
            s
            for s in shards
            if s not in kept_set
            and not self.remote.entry(self.entries[s]["path"]).valid(*self._check(s))
        ]
        if len(missing) > 1:
            self.prefetcher.urgent(missing)

    def close(self) -> None:
        """Stop the prefetcher and release the kept pins (shards in use go when their block
        ends)."""
        self.prefetcher.close()
        with self._lock:
            self._closed = True
            dropped = list(self._held.values())
            self._held.clear()
            self._held_bytes = 0
            for held in dropped:
                held.dropped = True
            release = [h for h in dropped if h.users == 0]
            holder, self._holder = self._holder, None
        self._unpin(release)
        if holder is not None:  # unregister: removed while still locked, never seen dead
            with contextlib.suppress(OSError):
                holder.path.unlink()
            holder.release()


def _watch(ref: weakref.ref) -> None:
    """Every ``REFRESH`` seconds, while the RemoteShards lives and keeps shards: let go those
    another process waits for (an idle process too: its takes do not look)."""
    while True:
        time.sleep(max(REFRESH, 0.05))
        shards = ref()
        if shards is None or not shards._let_go_wanted():
            return
        del shards
