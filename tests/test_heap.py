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


def _printed(code: str, env: dict):
    """The JSON ``code`` prints in a fresh interpreter, with no MALLOC_* or GRADUM_TUNE*
    variable but those of ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GRADUM_TUNE"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _tune(env: dict) -> tuple[dict, dict]:
    code = (
        "import json; from shards.heap import tune_heap; "
        "print(json.dumps([tune_heap(), tune_heap()]))"
    )
    first, second = _printed(code, env)
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


# Code that makes a fresh interpreter look like a worker started as ``python -m MODULE``.
_AS_MAIN = (
    "import sys, types; sys.modules['__main__'].__spec__ = types.SimpleNamespace(name={!r}); "
)
BEAM_WORKER, WARM_WORKER = (
    "apache_beam.runners.worker.sdk_worker_main",
    "pipelines.job.warm_worker_main",
)


def _worker_fn_tunes(as_sdk_worker: bool | str) -> bool:
    """Whether a WorkerFn's setup tuned the heap of a fresh interpreter, started as Beam's SDK
    worker (or as the module named) or as anything else (a job run in memory runs its DoFns in
    the caller's process)."""
    main = BEAM_WORKER if as_sdk_worker is True else as_sdk_worker
    code = (_AS_MAIN.format(main) if main else "") + (
        "from pipelines.job.worker_fn import WorkerFn; import shards.heap as h; "
        "WorkerFn().setup(); print(h._TUNED)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GRADUM_TUNE"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_only_a_beam_worker_process_is_tuned_by_the_finishing_steps():
    assert _worker_fn_tunes(as_sdk_worker=True)
    assert _worker_fn_tunes(as_sdk_worker=WARM_WORKER)  # Beam's worker, started early
    assert not _worker_fn_tunes(as_sdk_worker=False)
    assert not _worker_fn_tunes(as_sdk_worker="pipelines.score")


def test_the_launcher_is_tuned_only_when_the_workers_are_other_processes():
    from pipelines.job.runner import beam_options, workers_in_subprocesses

    assert workers_in_subprocesses(beam_options([]))  # gradum's local default
    assert not workers_in_subprocesses(beam_options(["--direct_running_mode=in_memory"]))
    assert not workers_in_subprocesses(beam_options(["--direct_running_mode=multi_threading"]))
    assert not workers_in_subprocesses(beam_options(["--runner=DataflowRunner"]))


def _frozen_after(code: str, as_sdk_worker: bool) -> list[int]:
    """``gc.get_freeze_count()`` printed by ``code`` in a fresh interpreter, started as Beam's
    SDK worker or as anything else."""
    out = subprocess.run(
        [sys.executable, "-c", (_AS_MAIN.format(BEAM_WORKER) if as_sdk_worker else "") + code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return [int(x) for x in out.stdout.split()]


def test_a_beam_worker_freezes_its_set_up_objects_once_and_no_other_process_does():
    code = (
        "import gc; from pipelines.job.worker_fn import WorkerFn; "
        "from pipelines.job.stage import StagePart; "
        "s = StagePart(out_dir='o', staging='s', columns=[], dedupe_buckets=0, kmeans=None, "
        "proxy=None); s.start_bundle(); a = gc.get_freeze_count(); junk = [[] for _ in range(999)]; "
        "WorkerFn().setup(); s.start_bundle(); print(a, gc.get_freeze_count())"
    )
    first, later = _frozen_after(code, as_sdk_worker=True)
    assert first > 10_000  # Beam, numpy and pyarrow at least, out of the collector's walks
    assert later == first  # once per process: objects made since are collected as usual
    assert _frozen_after(code, as_sdk_worker=False) == [0, 0]  # a caller's process: untouched


def _cap(env: dict, tune_first: bool = False) -> list:
    code = (
        "import json; from shards.heap import cap_mmap_threshold, tune_heap; "
        + ("tune_heap(); " if tune_first else "")
        + "print(json.dumps([cap_mmap_threshold(), cap_mmap_threshold()]))"
    )
    return _printed(code, env)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_scoring_stage_s_mmap_threshold_is_set_once_and_never_over_the_fixed_limits():
    assert _cap({}) == [{"MALLOC_MMAP_THRESHOLD_": 4 << 20}, {}]
    assert _cap({}, tune_first=True) == [{}, {}]  # the finishing steps' 128 KiB stays
    assert _cap({"MALLOC_MMAP_THRESHOLD_": "65536"}) == [{}, {}]  # the user's value wins
    assert _cap({"GRADUM_TUNE_HEAP": "0"}) == [{}, {}]
