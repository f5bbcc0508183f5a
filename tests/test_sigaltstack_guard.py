"""scorers.sigaltstack_guard: a block that replaces the thread's alternate signal stack gets the
old one back, and a Python signal handler still runs afterwards (the crash it prevents)."""

from __future__ import annotations

import ctypes
import signal
import sys

import pytest

from scorers.sigaltstack_guard import _Stack, current_signal_stack, preserved_signal_stack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc stack_t")


def _set_stack(buffer: ctypes.Array) -> None:
    new = _Stack(ctypes.addressof(buffer), 0, len(buffer))
    assert ctypes.CDLL(None).sigaltstack(ctypes.byref(new), None) == 0


def test_the_stack_replaced_inside_the_block_is_put_back_and_handlers_still_run():
    before = current_signal_stack()
    assert before is not None
    foreign = ctypes.create_string_buffer(64 * 1024)  # what a native library would install
    with preserved_signal_stack():
        _set_stack(foreign)
        assert current_signal_stack()[0] == ctypes.addressof(foreign)
    assert current_signal_stack() == before
    del foreign

    seen = []
    old = signal.signal(signal.SIGUSR1, lambda *_: seen.append(1))
    try:
        signal.raise_signal(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert seen == [1]


def test_a_block_that_leaves_the_stack_alone_changes_nothing():
    before = current_signal_stack()
    with preserved_signal_stack():
        pass
    assert current_signal_stack() == before
    with pytest.raises(RuntimeError), preserved_signal_stack():
        raise RuntimeError("errors pass through")
    assert current_signal_stack() == before
