"""shards.heap: glibc's heap limits set once per process, the user's MALLOC_* variables and
GRADUM_TUNE_HEAP=0 respected. Each case runs in a fresh interpreter (the limits are
process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tune(env: dict) -> tuple[dict, dict]:
    code = (
        "import json; from shards.heap import tune_heap; "
        "print(json.dumps([tune_heap(), tune_heap()]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GRADUM_TUNE"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    first, second = json.loads(out.stdout)
    return first, second


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_limits_are_set_once():
    first, second = _tune({})
    assert first == {
        "MALLOC_MMAP_THRESHOLD_": 128 << 10,
        "MALLOC_TRIM_THRESHOLD_": 128 << 10,
        "MALLOC_ARENA_MAX": 2,
    }
    assert second == {}  # once per process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_variable_the_user_set_wins():
    first, _ = _tune({"MALLOC_ARENA_MAX": "4"})
    assert "MALLOC_ARENA_MAX" not in first
    assert set(first) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}


def test_gradum_tune_heap_0_leaves_the_defaults():
    first, second = _tune({"GRADUM_TUNE_HEAP": "0"})
    assert first == {} and second == {}
