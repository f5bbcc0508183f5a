"""Keep the calling thread's alternate signal stack across a call into native code.

OpenVINO's CPU plugin (2026.4) points the compiling thread's ``sigaltstack`` at a buffer of
its own in ``compile_model`` and only puts the old one back when the compiled model is
destroyed on that same thread. Dropped elsewhere (a garbage collection on another thread,
interpreter shutdown), the thread keeps a stack that OpenVINO may free. CPython installs its
handlers with ``SA_ONSTACK``, so the next signal with a Python handler (SIGINT, SIGCHLD once
torch's DataLoader set one) makes the kernel write its frame there: a SIGSEGV with
``si_code == SI_KERNEL`` while the thread sleeps. Seen in this project's test suite.
:func:`preserved_signal_stack` restores the thread's stack after the call; OpenVINO still
uses its own handlers, only on the stack the thread had.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
from collections.abc import Iterator


class _Stack(ctypes.Structure):  # glibc's stack_t on Linux
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _read() -> _Stack | None:
    libc = _libc()
    now = _Stack()
    if libc is None or libc.sigaltstack(None, ctypes.byref(now)) != 0:
        return None
    return now


def _key(stack: _Stack) -> tuple[int, int, int]:
    return (stack.ss_sp or 0, stack.ss_flags, stack.ss_size)


def current_signal_stack() -> tuple[int, int, int] | None:
    """``(address, flags, size)`` of this thread's alternate signal stack (None off Linux)."""
    now = _read()
    return None if now is None else _key(now)


@contextlib.contextmanager
def preserved_signal_stack() -> Iterator[None]:
    """Run the block, then give this thread back the signal stack it had before it."""
    before = _read()
    try:
        yield
    finally:
        if before is not None and current_signal_stack() != _key(before):
            _libc().sigaltstack(ctypes.byref(before), None)
