"""The rank guide: a bounded uniform sample of the signal values that tells the rank sketch's
first pass where to cut (:mod:`pipelines.stats.ranks`).

Cut at ``GUIDE_KEYS`` sampled keys, pass 0's cells hold about ``n / GUIDE_KEYS`` values each,
far under the ``2 eps n`` that makes a cell heavy, so a signal is usually complete after one
pass over its keys; the 16-bit radix buckets alone need two or three (measured on the five
CPU signals at 1e6 records: every one complete after pass 0 with the guide). Later passes then
read almost nothing. The guide never changes what the sketch guarantees, only how soon it is
done: any guide, or none, gives ranks within eps.

Each part offers its rows with the smallest hash of (part key, row), at most
:func:`pipelines.job.samples.part_cap` of them; :class:`GuideCombineFn` keeps the
``GUIDE_KEYS`` rows with the smallest ``(hash, part, row)``. The sample is a pure function of
the input, whatever the bundling or runner, and no worker holds more than two accumulators of
``GUIDE_KEYS`` rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import numpy as np

from pipelines.io.records import stable_hash
from pipelines.stats import ranks

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele, Lea and Flood 2014): a bijection of uint64 that spreads
    consecutive inputs over the whole range."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _empty(columns: Iterable[str]) -> dict:
    return {
        "hash": np.empty(0, np.uint64),
        "part": np.empty(0, np.uint64),
        "row": np.empty(0, np.int64),
        "columns": {c: np.empty(0, np.float64) for c in columns},
    }


def part_offer(key: str, columns: dict[str, np.ndarray], cap: int) -> dict:
    """A part's offer: its ``cap`` rows with the smallest hash, as arrays
    ``{"hash", "part", "row", "columns": {column: values}}``."""
    n = len(next(iter(columns.values()))) if columns else 0
    if not n or cap <= 0:
        return _empty(columns)
    part = np.full(n, stable_hash(key), np.uint64)
    rows = np.arange(n, dtype=np.int64)
    hashes = _mix(part * _GOLDEN + rows.astype(np.uint64))
    take = np.lexsort((rows, hashes))[:cap]
    return {
        "hash": hashes[take],
        "part": part[take],
        "row": rows[take],
        "columns": {c: np.asarray(v, np.float64)[take] for c, v in columns.items()},
    }


def _smallest(offers: list[dict], k: int) -> dict:
    hashes = np.concatenate([o["hash"] for o in offers])
    parts = np.concatenate([o["part"] for o in offers])
    rows = np.concatenate([o["row"] for o in offers])
    take = np.lexsort((rows, parts, hashes))[:k]
    names = sorted(set().union(*(o["columns"] for o in offers)))
    columns = {}
    for c in names:  # a column an offer lacks (a later scorer set) is NaN there
        values = [o["columns"].get(c, np.full(len(o["hash"]), np.nan)) for o in offers]
        columns[c] = np.concatenate(values)[take]
    return {"hash": hashes[take], "part": parts[take], "row": rows[take], "columns": columns}


class GuideCombineFn(beam.CombineFn):
    """Part offers -> the ``k`` rows with the smallest ``(hash, part, row)``."""

    def __init__(self, k: int = ranks.GUIDE_KEYS) -> None:
        self.k = int(k)

    def create_accumulator(self) -> dict:
        return _empty(())

    def add_input(self, acc: dict, offer: dict) -> dict:
        return _smallest([acc, offer], self.k)

    def merge_accumulators(self, accs) -> dict:
        out = None
        for acc in accs:  # one at a time: two accumulators held at most
            out = acc if out is None else _smallest([out, acc], self.k)
        return out if out is not None else self.create_accumulator()

    def extract_output(self, acc: dict) -> dict:
        return acc


def guide_keys(guide: dict, column: str) -> np.ndarray | None:
    """The sort keys of a column's finite sampled values (None: the column was not sampled)."""
    values = guide["columns"].get(column)
    if values is None:
        return None
    values = values[np.isfinite(values)]
    return np.unique(ranks.order_keys(values))[: ranks.GUIDE_KEYS]
