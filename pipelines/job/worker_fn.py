"""The base of gradum's DoFns: its ``setup`` fixes the worker process's heap limits once
(:func:`shards.heap.tune_heap`), so that a worker's memory follows what it holds, not how
many records it has passed (glibc's adaptive thresholds made it grow with them)."""

from __future__ import annotations

import apache_beam as beam

from shards.heap import tune_heap


class WorkerFn(beam.DoFn):
    """A DoFn whose ``setup`` tunes the worker's heap; a subclass's ``setup`` calls super."""

    def setup(self) -> None:
        tune_heap()
