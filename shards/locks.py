"""Advisory file locks (``flock``) shared by the processes of a host, and by threads.

Each :class:`FileLock` opens its own file description, so two locks on one path conflict
even inside one process: a thread holding a shared lock blocks another thread's exclusive
lock, as a process would. Locks die with their process (a killed rank never leaves a cache
locked). On network file systems, Linux emulates ``flock`` with byte-range locks (NFSv4).
"""

from __future__ import annotations

import os
from pathlib import Path

try:  # POSIX only; without fcntl the cache still works in one process, unlocked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class FileLock:
    """A lock file at ``path`` (created on first use, never deleted: deleting lock files
    races with their users). ``acquire(exclusive, blocking)``; ``release()``; also a context
    manager taking the lock exclusively."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self.mode: str | None = None  # "sh" or "ex" while held

    def acquire(self, exclusive: bool = False, blocking: bool = True) -> bool:
        """Take the lock (a held lock is converted); False when ``blocking`` is False and
        another holder conflicts."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:  # pragma: no cover
            self.mode = "ex" if exclusive else "sh"
            return True
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            fcntl.flock(self._fd, op)
        except BlockingIOError:
            if self.mode is None:
                self.close()
            return False
        self.mode = "ex" if exclusive else "sh"
        return True

    def release(self) -> None:
        """Drop the lock and close the file description."""
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the description releases its flock
            self._fd = None
        self.mode = None

    def __enter__(self) -> FileLock:
        self.acquire(exclusive=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - safety net
        self.close()
