"""Bounded samples: the k rows with the smallest keys over the whole corpus, on any runner,
without gathering more than k rows anywhere.

A row is a tuple whose first two fields are its key (a number from a hash) and its id; the
sample is the ``k`` smallest by ``(key, id)``, a pure function of the input. Three bounds:

1. each part offers at most its own ``cap`` smallest rows (:func:`part_cap`: enough for the
   global sample when the launcher's row estimate is right within ``SLACK``x; all ``k`` when
   the input's size is a guess);
2. each worker process offers a row only while it is among the ``k`` smallest the process has
   seen (:class:`RunningBottom`): a row of the global sample always is, so nothing it needs
   is lost, and a process offers about ``k ln(parts)`` rows over a whole job;
3. :class:`BottomKCombineFn` keeps ``k`` rows per accumulator (combiner lifting: every worker
   pre-combines) and merges accumulators one at a time, so the worker that merges holds at
   most ``2k`` rows beside the accumulators its runner hands it (Dataflow streams a group's
   values; the local runner decodes them all, one per worker).
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Iterable

import apache_beam as beam
import numpy as np

SLACK = 8


def _order(row: tuple) -> tuple:
    return row[0], row[1]


def part_cap(k: int, part_rows: int, total_rows: int, guessed: bool) -> int:
    """Rows a part of ``part_rows`` offers towards a ``k``-row sample of ``total_rows``."""
    if guessed or total_rows <= 0:
        return k
    return min(k, math.ceil(SLACK * k * part_rows / total_rows) + 64)


def smallest(rows: list[tuple], k: int) -> list[tuple]:
    """The ``k`` rows with the smallest ``(key, id)``, sorted."""
    return heapq.nsmallest(k, rows, key=_order)


class RunningBottom:
    """The ``k`` smallest keys this process has seen, per sample name (see the module doc)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def admit(self, name: tuple[str, str], k: int, rows: list[tuple]) -> list[tuple]:
        """The rows that are among the ``k`` smallest keys seen so far, these included."""
        if not rows:
            return rows
        keys = np.array([r[0] for r in rows], dtype=np.float64)
        with self._lock:
            merged = np.concatenate([self._kept.get(name, np.empty(0)), keys])
            if len(merged) <= k:
                self._kept[name] = merged
                return rows
            kth = np.partition(merged, k - 1)[k - 1]
            self._kept[name] = np.sort(merged[merged <= kth])[:k]
        return [r for r, key in zip(rows, keys.tolist(), strict=True) if key <= kth]


RUNNING = RunningBottom()


class BottomKCombineFn(beam.CombineFn):
    """Lists of rows -> the ``k`` rows with the smallest ``(key, id)``, sorted."""

    def __init__(self, k: int) -> None:
        self.k = int(k)

    def create_accumulator(self) -> list[tuple]:
        return []

    def add_input(self, acc: list[tuple], rows: Iterable[tuple]) -> list[tuple]:
        return smallest([*acc, *rows], self.k)

    def merge_accumulators(self, accs: Iterable[list[tuple]]) -> list[tuple]:
        out: list[tuple] = []
        for acc in accs:  # one at a time: at most 2k rows held, whatever the accumulators
            out = smallest([*out, *acc], self.k)
        return out

    def extract_output(self, acc: list[tuple]) -> list[tuple]:
        return smallest(acc, self.k)
