"""Give freed heap pages back to the system (glibc's ``malloc_trim``; a no-op without glibc).

glibc keeps the pages of short-lived buffers of 1-2 MB (at its dynamic mmap threshold) in
its heap: the index reader's and the build sorts' temporaries stayed resident (about
1.5 B/item at 1e7 items) until trimmed."""

from __future__ import annotations

from typing import Any

_TRIM: Any = None


def trim_heap() -> None:
    """``malloc_trim(0)`` where glibc is loaded."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)
