"""glibc heap settings for long-running processes (no-ops without glibc).

``trim_heap``: give freed heap pages back to the system (``malloc_trim``). glibc keeps the
pages of short-lived buffers of 1-2 MB (at its dynamic mmap threshold) in its heap: the index
reader's and the build sorts' temporaries stayed resident (about 1.5 B/item at 1e7 items)
until trimmed. The job's scoring stage trims after each part (about 0.5 ms): there Beam's
data plane frees 10-26 MiB flush buffers whose pages glibc kept, a worker's peak at 3e6
records 386 -> 367 MiB (benchmarks/README.md, "pipeline at scale").

``cap_mmap_threshold``: only the mmap threshold, fixed at 4 MiB, for the scoring stage when
no model runs in it: the flush buffers then get their own mappings instead of fragmenting
the heap (a worker's peak at 3e6 records 367 -> 331 MiB, flat from 1e6 to 1e7).

``tune_heap``: fixed limits instead of glibc's adaptive ones, for worker processes that pass
many short-lived buffers of every size (Beam's data plane, Arrow and numpy temporaries).
By default glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB)
and keeps up to 8 arenas per core, so after the first large buffer every later one is carved
from a heap that fragments and is seldom given back: a job's worker grew with the records it
had processed (a 1e6 job: 555-573 MiB per worker, 443-463 MiB with the limits below set
after scoring, 401-414 MiB with them set throughout; benchmarks/README.md, "pipeline at
scale"). They cost torch: LM scoring ran 40-70 % slower under them, so gradum sets them only
where no model runs (pipelines/job/worker_fn.py). The limits are those Dask and
others recommend through ``MALLOC_*`` variables; a variable the user set wins, and
``GRADUM_TUNE_HEAP=0`` leaves glibc's defaults alone.
"""

from __future__ import annotations

import os
from typing import Any

_LIBC: Any = None
_TUNED = False
_CAPPED = False

# mallopt parameters (malloc.h) -> (environment variable that overrides, value)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
HEAP_LIMITS = {
    _M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 128 << 10),  # blocks over 128 KiB: own mmap
    _M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 128 << 10),  # give back free tops over 128 KiB
    _M_ARENA_MAX: ("MALLOC_ARENA_MAX", 2),
}
SCORING_MMAP_THRESHOLD = 4 << 20  # cap_mmap_threshold: only blocks over 4 MiB get a mapping


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim, _LIBC.mallopt  # noqa: B018  (both exist: glibc)
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


def trim_heap() -> None:
    """``malloc_trim(0)`` where glibc is loaded."""
    libc = _libc()
    if libc:
        libc.malloc_trim(0)


def cap_mmap_threshold(nbytes: int = SCORING_MMAP_THRESHOLD) -> dict[str, int]:
    """Fix glibc's mmap threshold at ``nbytes`` (blocks of that size or more get their own
    mapping, given back when freed), once per process and never after :func:`tune_heap`,
    unless the environment sets it (or ``GRADUM_TUNE_HEAP=0``). For the job's scoring stage
    when no model runs in it: Beam's data plane frees 10-26 MiB flush buffers there, which
    under the adaptive threshold land in the heap and fragment it. Returns what was set."""
    global _CAPPED
    libc = _libc()
    env = HEAP_LIMITS[_M_MMAP_THRESHOLD][0]
    if not libc or _CAPPED or _TUNED or os.environ.get("GRADUM_TUNE_HEAP") == "0":
        return {}
    _CAPPED = True
    if env in os.environ or libc.mallopt(_M_MMAP_THRESHOLD, nbytes) != 1:
        return {}
    return {env: nbytes}


def tune_heap() -> dict[str, int]:
    """Set glibc's fixed heap limits (:data:`HEAP_LIMITS`) once per process, except those the
    environment sets (none with ``GRADUM_TUNE_HEAP=0``). Returns what was set, by variable
    name ({} without glibc)."""
    global _TUNED
    libc = _libc()
    if not libc or _TUNED or os.environ.get("GRADUM_TUNE_HEAP") == "0":
        return {}
    _TUNED = True
    done = {}
    for param, (env, value) in HEAP_LIMITS.items():
        if env not in os.environ and libc.mallopt(param, value) == 1:
            done[env] = value
    return done
