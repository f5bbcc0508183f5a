"""A bounded shard cache on local disk, shared by the processes (ranks, DataLoader workers) and
threads of a host.

Layout: ``CACHE/<dataset key>/shards/part-KEY.arrow`` with two hidden companions,
``.part-KEY.arrow.sha256`` (the stamp: ``sha256 size mtime_ns`` of the kept file, written
once the file was verified; its mtime is the LRU clock, touched on every use) and
``.part-KEY.arrow.lock`` (the entry's ``flock``).

Protocol (every step holds the entry's lock):

- use: shared lock; if the stamp matches the file, touch the stamp and use the file under
  the shared lock (a *pin*: no process evicts a pinned file);
- download: exclusive lock (so one process of a host downloads a shard, the others wait),
  check again, download to a unique name ``.part-KEY.arrow.tmp-HOST-PID-RANDOM``, hash that
  file itself (the file that is kept is the file that was verified), check size and sha256
  against the manifest, rename it into place, write the stamp;
- wait for the exclusive lock: pins this process keeps are let go, and a want marker
  (``.part-KEY.arrow.want/HOST-PID``, one per waiting process) tells other processes to let
  theirs go (:func:`exclusive`); a process's keepers never read its own markers;
- evict: once a download lands, while the cache's completed files exceed ``limit`` bytes,
  delete the least recently used entries whose exclusive lock can be taken without waiting
  (a pinned entry is skipped), entries this process expects to need soon last
  (:meth:`ShardCache.protect`).

So the cache holds at most ``limit`` bytes plus the pinned entries, plus the partial files of
downloads in flight. Only files with a stamp are ever deleted: the limit applies to fetched
copies, never to a local dataset's own files or to anything else in the directory.

Pins kept between uses (:class:`shards.fetcher.RemoteShards` keeps the shards it uses most
pinned, so that a take on them needs no system call) stay within the limit: each *holder*
registers under ``CACHE/.holders/`` (a file it keeps locked while it lives; a dead holder's
file is unlocked and removed by the next count) and keeps at most ``limit / holders`` bytes
pinned (:meth:`ShardCache.hold_share`). So the pins kept by all holders fit in the limit
together, and the cache holds at most ``limit`` bytes plus the shard each take is pinning
beyond them (one per process taking: limit + one shard for one process).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ShardMismatchError
from .hashing import sha256_file
from .locks import FileLock

HOLDERS = ".holders"  # under the cache root: one locked file per live holder of kept pins
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)


def parse_size(value: int | float | str | None) -> int | None:
    """Bytes from ``20_000``, ``"20GB"`` (10^9), ``"20GiB"`` (2^30), ``"512M"``; None stays
    None (no limit).

    Raises:
        ValueError: not a size, or negative.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"cache_limit must be a byte count or a size like '20GB', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"cache_limit must be >= 0, got {value!r}")
        return int(value)
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(
            f"cache_limit {value!r} is not a size (examples: 20000000, '20GB', '512MiB')"
        )
    num, unit, binary, _ = m.groups()
    unit = unit.lower()
    scale = 1024 ** "kmgt".index(unit) * 1024 if binary and unit else _UNITS[unit]
    return int(float(num) * scale)


@dataclass
class Entry:
    """One cached shard: the kept file, its stamp and its lock file."""

    data: Path
    label: str = ""  # how errors name it (the object's URI)

    @property
    def stamp(self) -> Path:
        return self.data.with_name(f".{self.data.name}.sha256")

    @property
    def lock_path(self) -> Path:
        return self.data.with_name(f".{self.data.name}.lock")

    @property
    def want_dir(self) -> Path:
        """Where waiting processes leave their want markers (:func:`exclusive`)."""
        return self.data.with_name(f".{self.data.name}.want")

    @property
    def want_path(self) -> Path:
        """This process's want marker, touched while it waits for the entry's exclusive lock:
        other processes' holders of kept pins on it let them go (:func:`wanted`)."""
        return self.want_dir / _process_name()

    def valid(self, sha256: str | None, size: int | None) -> bool:
        """The file is there and is the one that was verified (stamp matches it)."""
        try:
            st = self.data.stat()
            text = self.stamp.read_text()
        except OSError:
            return False
        if size is not None and st.st_size != int(size):
            return False
        return text == f"{sha256} {st.st_size} {st.st_mtime_ns}"


class Pin:
    """A shared lock on a valid entry: no process evicts it until :meth:`release`."""

    def __init__(self, entry: Entry, lock: FileLock) -> None:
        self.entry, self.path, self._lock = entry, entry.data, lock

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> Pin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _process_name() -> str:
    """``HOST-PID``: this process among the hosts sharing a cache directory."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def unique_suffix() -> str:
    """``HOST-PID-RANDOM``: unique across the hosts sharing a cache directory."""
    return f"{_process_name()}-{secrets.token_hex(4)}"


class ShardCache:
    """Fetched shards under ``root``, at most ``limit`` bytes (None: unbounded)."""

    def __init__(self, root: str | os.PathLike, limit: int | str | None = None) -> None:
        self.root = Path(root)
        self.limit = parse_size(limit)
        self.root.mkdir(parents=True, exist_ok=True)
        self._evicting = threading.Lock()
        self._stats_lock = threading.Lock()
        self._protected: dict[Path, int] = {}
        self.stats = {
            "hits": 0,
            "misses": 0,
            "downloads": 0,
            "bytes_downloaded": 0,
            "evictions": 0,
            "bytes_evicted": 0,
        }
        self.on_evict: Callable[[Path], None] | None = None

    def _count(self, **inc: int) -> None:
        with self._stats_lock:
            for k, v in inc.items():
                self.stats[k] += v

    # -- use ---------------------------------------------------------------------------
    def pin(
        self,
        entry: Entry,
        sha256: str | None,
        size: int | None,
        download: Callable[[Path], None],
    ) -> tuple[Pin, bool]:
        """Pin ``entry``, downloading it first when missing; also says whether it was a hit."""
        hit = True
        entry.data.parent.mkdir(parents=True, exist_ok=True)
        while True:
            lock = FileLock(entry.lock_path)
            if not lock.acquire(exclusive=False, blocking=False):
                hit = False  # a download of it is running (here or in another process): wait
                lock.acquire(exclusive=False)
            if entry.valid(sha256, size):
                _touch(entry.stamp)
                self._count(hits=int(hit), misses=int(not hit))
                return Pin(entry, lock), hit
            lock.release()
            hit = False
            if self.fill(entry, sha256, size, download):
                # evict with the new entry pinned, so it is not its own victim
                pin = self.pin(entry, sha256, size, download)[0]
                self._count(hits=-1, misses=1)
                self.evict()
                return pin, False

    def fill(
        self, entry: Entry, sha256: str | None, size: int | None, download: Callable[[Path], None]
    ) -> bool:
        """Make ``entry`` valid (download and verify it unless another holder did); True when
        this call downloaded it. Does not evict: call :meth:`evict` after."""
        if entry.valid(sha256, size):  # no lock needed to see it is there
            return False
        entry.data.parent.mkdir(parents=True, exist_ok=True)
        lock = exclusive(entry, lambda: entry.valid(sha256, size))
        if lock is None:  # another holder made it valid meanwhile
            return False
        with lock:
            if entry.valid(sha256, size):
                return False
            tmp = entry.data.with_name(f".{entry.data.name}.tmp-{unique_suffix()}")
            try:
                download(tmp)
                _verify(tmp, entry, sha256, size)
                os.replace(tmp, entry.data)
            finally:
                tmp.unlink(missing_ok=True)
            st = entry.data.stat()
            stamp_tmp = entry.stamp.with_name(f"{entry.stamp.name}.tmp-{unique_suffix()}")
            stamp_tmp.write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}")
            os.replace(stamp_tmp, entry.stamp)
            self._count(downloads=1, bytes_downloaded=st.st_size)
        return True

    # -- holders of pins kept between uses ----------------------------------------------
    def register(self) -> FileLock:
        """Register a holder of kept pins: a file under ``root/.holders`` locked exclusively
        for as long as the returned lock is held (release it, or let the process end)."""
        d = self.root / HOLDERS
        d.mkdir(parents=True, exist_ok=True)
        name = unique_suffix()
        lock = FileLock(d / f".tmp-{name}")
        lock.acquire(exclusive=True)  # locked before it is visible: never counted as dead
        os.replace(lock.path, d / name)
        lock.path = d / name
        return lock

    def holders(self) -> int:
        """Live registered holders (at least 1); the files of dead ones are removed."""
        live = 0
        for f in _scandir(self.root / HOLDERS):
            if f.name.startswith("."):
                continue
            probe = FileLock(f.path)
            if probe.acquire(exclusive=True, blocking=False):  # unlocked: its holder is gone
                try:
                    os.unlink(f.path)
                except OSError:
                    pass
                probe.release()
            else:
                live += 1
        return max(1, live)

    def hold_share(self) -> int | None:
        """Bytes one holder may keep pinned between uses: ``limit / holders`` (None: no
        limit)."""
        if self.limit is None:
            return None
        return self.limit // self.holders()

    # -- eviction ----------------------------------------------------------------------
    def protect(self, ranks: dict[Path, int]) -> None:
        """Entries this process will need soon (lower rank: sooner); evicted last."""
        self._protected = dict(ranks)

    def entries(self) -> Iterator[tuple[Entry, int, float]]:
        """(entry, bytes, last use) of every completed entry under the root (all datasets)."""
        for ds in _scandir(self.root):
            if not ds.is_dir(follow_symlinks=False):
                continue
            for f in _scandir(Path(ds.path) / "shards"):
                name = f.name
                if not (name.startswith(".") and name.endswith(".sha256")):
                    continue
                entry = Entry(Path(ds.path) / "shards" / name[1 : -len(".sha256")])
                try:
                    size = entry.data.stat().st_size
                    used = f.stat().st_mtime
                except OSError:
                    continue
                yield entry, size, used

    def usage(self) -> int:
        """Bytes of completed entries (all datasets under the root)."""
        return sum(size for _, size, _ in self.entries())

    def evict(self) -> int:
        """Delete least recently used unpinned entries until the completed entries fit in the
        limit; returns the bytes freed. Another thread of this process already evicting: skip."""
        if self.limit is None or not self._evicting.acquire(blocking=False):
            return 0
        try:
            found = list(self.entries())
            total = sum(size for _, size, _ in found)
            if total <= self.limit:
                return 0
            prot = self._protected
            # unprotected oldest first, then protected, needed last first
            found.sort(key=lambda e: (e[0].data in prot, -prot.get(e[0].data, 0), e[2]))
            freed = 0
            for entry, size, _ in found:
                if total - freed <= self.limit:
                    break
                if self._delete(entry):
                    freed += size
            return freed
        finally:
            self._evicting.release()

    def _delete(self, entry: Entry) -> bool:
        lock = FileLock(entry.lock_path)
        if not lock.acquire(exclusive=True, blocking=False):
            return False  # pinned or being downloaded
        try:
            size = entry.data.stat().st_size if entry.data.exists() else 0
            entry.data.unlink(missing_ok=True)
            entry.stamp.unlink(missing_ok=True)
        finally:
            lock.release()
        self._count(evictions=1, bytes_evicted=size)
        if self.on_evict is not None:
            self.on_evict(entry.data)
        return True


# Holders of kept pins in this process (``let_go(path)`` releases a kept pin on ``path`` as
# soon as no block uses it): a process waiting for an exclusive lock asks them first.
_KEEPERS: weakref.WeakSet = weakref.WeakSet()
WANT_FRESH = 10.0  # seconds: an older want marker was left by a waiter that is gone


def add_keeper(keeper: object) -> None:
    """Register an object with a ``let_go(path)`` method (see :func:`exclusive`)."""
    _KEEPERS.add(keeper)


def exclusive(entry: Entry, done: Callable[[], bool] | None = None) -> FileLock | None:
    """The entry's lock, taken exclusively (a context manager: released on exit), or None
    once ``done()`` says it is no longer needed (another holder made the entry valid).

    While a download holds the lock, this waits. While only shared locks (pins) hold it,
    pins kept by this process are let go at once, and the entry's want marker tells other
    processes' holders to let theirs go (they look every ``shards.fetcher.REFRESH`` s), so a
    kept pin never blocks a download or a check for long; a pin in use is waited for.

    The marker is this process's own (:attr:`Entry.want_path`): its keepers are asked
    directly, on every look, and never read it. A marker shared by the process's threads made
    a keeper drop a shard it had just downloaded itself, when a prefetch thread waiting for
    the same shard had seen the keeper's own check of the entry as a pin."""
    lock = FileLock(entry.lock_path)
    pause, asked = 0.002, False
    try:
        while not lock.acquire(exclusive=True, blocking=False):
            if done is not None and done():
                return None
            probe = FileLock(entry.lock_path)
            pinned = probe.acquire(exclusive=False, blocking=False)  # no download holds it
            probe.release()
            # a download may have ended and its pin begun between done() and the probe: a pin
            # on a valid entry is no reason to ask anyone to let go
            if pinned and done is not None and done():
                return None
            if pinned:
                for keeper in list(_KEEPERS):
                    keeper.let_go(entry.data)
                asked = True
                _touch_marker(entry)
            time.sleep(pause)
            pause = min(0.05, pause * 2)
    finally:
        if asked:
            entry.want_path.unlink(missing_ok=True)
            _clear_stale_markers(entry)
            with contextlib.suppress(OSError):  # another process's marker is still there
                entry.want_dir.rmdir()
    return lock


def _clear_stale_markers(entry: Entry) -> None:
    """Remove markers older than ``WANT_FRESH``: left by waiters that were killed (a live
    waiter refreshes its own on every look), so they do not pile up beside the shard."""
    now = time.time()
    for marker in _scandir(entry.want_dir):
        with contextlib.suppress(OSError):
            if now - marker.stat().st_mtime >= WANT_FRESH:
                os.unlink(marker.path)


def _touch_marker(entry: Entry) -> None:
    """Create or refresh this process's want marker on ``entry``."""
    try:
        entry.want_dir.mkdir(exist_ok=True)
    except OSError:  # pragma: no cover - the cache directory went away
        return
    _touch(entry.want_path, create=True)


def wanted(entry: Entry) -> bool:
    """Whether another process is waiting for the entry's exclusive lock (a fresh want marker
    that is not this process's own)."""
    mine, now = _process_name(), time.time()
    for marker in _scandir(entry.want_dir):
        if marker.name == mine:
            continue
        try:
            if now - marker.stat().st_mtime < WANT_FRESH:
                return True
        except OSError:  # its waiter is done
            continue
    return False


def _verify(tmp: Path, entry: Entry, sha256: str | None, size: int | None) -> None:
    name = entry.label or str(entry.data)
    got_size = tmp.stat().st_size
    if size is not None and got_size != int(size):
        raise ShardMismatchError(f"{name}: {got_size} bytes, manifest says {size}: not served")
    if sha256:
        got = sha256_file(tmp)  # the file itself, not the stream it came from
        if got != sha256:
            raise ShardMismatchError(
                f"{name}: sha256 {got[:12]}... does not match the manifest's "
                f"{sha256[:12]}...; the object is corrupt or was modified: not served"
            )


def _touch(path: Path, ns: int | None = None, create: bool = False) -> None:
    """Set the mtime of ``path`` (an entry's stamp: its LRU clock) to ``ns`` (default: now);
    ``create`` it when missing."""
    try:
        if create and not path.exists():
            path.touch()
        now = time.time_ns() if ns is None else ns
        os.utime(path, ns=(now, now))
    except OSError:  # pragma: no cover - evicted between check and touch
        pass


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []
