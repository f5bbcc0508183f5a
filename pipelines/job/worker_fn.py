"""The base of the DoFns that run after scoring (kept columns, rank passes, shard writing):
their ``setup`` fixes the worker process's heap limits once (:func:`shards.heap.tune_heap`),
so that a worker's memory in the finishing stages follows what it holds, not how many records
it has passed (glibc's adaptive thresholds made it grow with them).

The scoring DoFns do not derive from it: with a fixed 128 KiB mmap threshold every large
torch activation is a fresh mapping, and LM scoring ran 40-70 % slower (benchmarks/README.md,
"pipeline at scale"). On a batch runner the finishing stages start after scoring has ended
(they read the output of a shuffle), so the limits never apply while a model runs. Only a
process that Beam started as an SDK worker (``python -m ...sdk_worker_main``: the local
runner's subprocesses, started early or not, a worker pool's, Dataflow's) is tuned: a job run in memory or on
threads runs its DoFns in the caller's own process, whose later work the limits would slow.

:func:`freeze_setup_objects` moves what a worker process holds once it is set up (Beam,
numpy, pyarrow, the scorers and their tables: about 200,000 objects) out of Python's cyclic
garbage collector's reach, so that its full collections, which a part's records set off as
they pile up, walk only what the job made since: a worker of a 1e6-record job spent 1.2 s in
full collections, 0.3 s after (benchmarks/README.md, "pipeline")."""

from __future__ import annotations

import gc
import sys

import apache_beam as beam

from shards.heap import tune_heap

SDK_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"
WARM_WORKER_MAIN = "pipelines.job.warm_worker_main"  # the same worker, started early


def in_sdk_worker_process() -> bool:
    """Whether this process was started as Beam's SDK worker (``python -m`` that module, or
    :mod:`pipelines.job.warm_worker_main`, which runs it)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) in (SDK_WORKER_MAIN, WARM_WORKER_MAIN)


_FROZEN = False


def freeze_setup_objects() -> None:
    """Once per SDK worker process: collect, then ``gc.freeze()`` every object alive (they
    are still freed when their last reference goes; only cycles among them would stay). A
    no-op in any other process: a job run in memory leaves the caller's collector alone."""
    global _FROZEN
    if _FROZEN or not in_sdk_worker_process():
        return
    _FROZEN = True
    gc.collect()
    gc.freeze()


class WorkerFn(beam.DoFn):
    """A DoFn whose ``setup`` tunes the worker's heap and freezes its set-up objects (in an
    SDK worker process only); a subclass's ``setup`` calls super."""

    def setup(self) -> None:
        if in_sdk_worker_process():
            tune_heap()
            freeze_setup_objects()
