"""The base of the DoFns that run after scoring (kept columns, rank passes, shard writing):
their ``setup`` fixes the worker process's heap limits once (:func:`shards.heap.tune_heap`),
so that a worker's memory in the finishing stages follows what it holds, not how many records
it has passed (glibc's adaptive thresholds made it grow with them).

The scoring DoFns do not derive from it: with a fixed 128 KiB mmap threshold every large
torch activation is a fresh mapping, and LM scoring ran 40-70 % slower (benchmarks/README.md,
"pipeline at scale"). On a batch runner the finishing stages start after scoring has ended
(they read the output of a shuffle), so the limits never apply while a model runs."""

from __future__ import annotations

import apache_beam as beam

from shards.heap import tune_heap


class WorkerFn(beam.DoFn):
    """A DoFn whose ``setup`` tunes the worker's heap; a subclass's ``setup`` calls super."""

    def setup(self) -> None:
        tune_heap()
