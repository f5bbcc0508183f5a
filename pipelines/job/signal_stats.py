"""The signal statistics of the written records: rank sketches (for difficulty) and value
sketches (the manifest's per-signal statistics). Both are combiners of counts: order-free,
bounded per worker, the same on any runner.

Rank sketch memory per worker and signal (``pipelines/stats/ranks.py``): the side input
``24 (2 / eps + 1)`` bytes (48 KiB at eps = 0.001), and before pass 0 the rank guide's cell
starts (at most 32,769 per signal, 256 KiB); a pass's counts, sent per part and summed by
:class:`_SumCounts`, at most ``32 (max(65,536, 256 floor(1 / (2 eps))) + 32,768)`` bytes
(4.9 MiB), whatever the number of records.

Each pass from pass 1 on hands the next one only the keys it found inside open intervals (tag
``rest``): passes 0 and 1 read the signal columns from each part's kept object (the runner
carries a reference per part, not the columns), later passes what is still unresolved, and a
pass after every sketch is complete reads nothing (pass 1 included: with the rank guide, the
CPU signals are complete after pass 0). Pass 0 hands on nothing: before its counts
every key is open, so its rest would be every key of every part, sent through the runner (40
bytes per record for five signals) only for pass 1 to drop most of them."""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from pipelines.job.kept import read_kept
from pipelines.job.rank_guide import guide_keys
from pipelines.job.totals import Total
from pipelines.job.worker_fn import WorkerFn
from pipelines.stats import ranks
from pipelines.stats.sketch import QuantileSketch


class _LevelCounts(WorkerFn):
    """One part's keys -> the next rank level's sparse counts, per column (main), and the keys
    inside open intervals, which the next pass reads (tag ``rest``, when ``rest`` is set and
    some are left). Passes 0 and 1 (``from_columns``) read a part's signal columns from its
    kept object (``{"kept": ref}``, :mod:`pipelines.job.kept`; pass 1 only when a sketch is
    still incomplete), later passes the ``{column: keys}`` the pass before left."""

    def __init__(self, columns: list[str], eps: float, *, from_columns: bool, rest: bool) -> None:
        self.columns, self.eps, self.rest = list(columns), eps, rest
        self.from_columns = from_columns

    def process(self, element: dict, sketches: dict | None = None):
        counts, left = {}, {}
        done = bool(sketches) and all(sketches[c].complete for c in self.columns)
        columns = read_kept(element["kept"]) if self.from_columns and not done else {}
        for c in self.columns:
            sketch = sketches[c] if sketches else ranks.RankSketch(self.eps)
            if self.from_columns:  # nothing read once every sketch is complete: no key is open
                v = np.asarray(columns.get(c, ()), dtype=np.float64).ravel()
                keys = ranks.order_keys(v[np.isfinite(v)])
            else:
                keys = element.get(c, ())  # no key of this column left open in this part
            keys = sketch.open_keys(keys)
            counts[c] = sketch.count_keys(keys)
            if len(keys):
                left[c] = keys
        yield counts
        if self.rest and left:
            yield beam.pvalue.TaggedOutput("rest", left)


class _SumCounts(beam.CombineFn):
    """Sum the sparse counts of every part, per column (addition: order-free). The accumulator
    is one histogram per column, of at most ``ranks.budget(eps)`` entries (every part counts
    the same buckets: those the previous pass left open), and accumulators are folded in one
    at a time, so a worker that merges holds two of them at most."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)

    def create_accumulator(self):
        return {c: ranks.merge_counts([]) for c in self.columns}

    def add_input(self, acc, counts):
        return {c: ranks.merge_counts([acc[c], counts[c]]) for c in self.columns}

    def merge_accumulators(self, accs):
        out = None
        for acc in accs:
            out = acc if out is None else self.add_input(out, acc)
        return out if out is not None else self.create_accumulator()

    def extract_output(self, acc):
        return acc


def _refine(sketches: dict, counts: dict, eps: float) -> dict:
    return _add_level(counts, sketches, eps)


def _add_level(counts: dict, sketches: dict | None, eps: float) -> dict:
    return {
        c: (sketches[c] if sketches else ranks.RankSketch(eps)).add_level(counts[c]) for c in counts
    }


def _guided(guide: dict, columns: list[str], eps: float) -> dict:
    """The sketches before pass 0, each cut at its column's guide keys (if it was sampled)."""
    return {c: ranks.RankSketch(eps, guide_keys(guide, c)) for c in columns}


class RankSketches:
    """Per-part kept-object references -> ``{column: RankSketch}`` refined until every bucket is
    small enough: ``ranks.passes(eps)`` passes over the columns (7 at eps = 0.001), each a
    count per part, a global sum and a compression; the sketch each pass hands on (a side
    input) holds at most ``ranks.sketch_bound(eps)`` intervals per column. ``guide``: the
    combined rank guide (:mod:`pipelines.job.rank_guide`, one element), which cuts pass 0 so
    that most columns are complete after it. Read the result with :meth:`side` (on an empty
    input: the sketches of no values)."""

    def __init__(self, parts, label: str, columns: list[str], eps: float, guide=None) -> None:
        self.columns, self.eps = list(columns), eps
        sketches, source, levels = None, parts, ranks.passes(eps)
        if guide is not None:
            sketches = guide | f"{label}/Guide" >> beam.Map(_guided, self.columns, eps)
        for level in range(levels):
            prev = self._side(sketches, level)
            rest = 0 < level < levels - 1
            fn = _LevelCounts(self.columns, eps, from_columns=level <= 1, rest=rest)
            out = source | f"{label}/Count{level}" >> beam.ParDo(fn, prev).with_outputs(
                "rest", main="counts"
            )
            counts = Total(out.counts, f"{label}/Sum{level}", _SumCounts(self.columns))
            if sketches is None:
                sketches = counts.pcoll | f"{label}/Level{level}" >> beam.Map(_add_level, None, eps)
            else:  # a pass with nothing left to read sums to nothing: the sketch goes on as is
                sketches = sketches | f"{label}/Level{level}" >> beam.Map(
                    _refine, counts.side(), eps
                )
            source = out.rest if level >= 1 else parts  # pass 1 reads the columns again
        self.pcoll, self._levels = sketches, levels

    def _empty(self, levels: int) -> dict:
        """The sketches ``levels`` passes make of no values (what each step emits on an empty
        input with Beam's default injection)."""
        sketches = {c: ranks.RankSketch(self.eps) for c in self.columns}
        for _ in range(levels):
            sketches = _add_level(_SumCounts(self.columns).create_accumulator(), sketches, self.eps)
        return sketches

    def _side(self, sketches, levels: int):
        if sketches is None:
            return None
        return beam.pvalue.AsSingleton(sketches, default_value=self._empty(levels))

    def side(self) -> beam.pvalue.AsSingleton:
        return self._side(self.pcoll, self._levels)


class SketchCombineFn(beam.CombineFn):
    """One :class:`QuantileSketch` per signal column over ``{"columns": ...}`` elements."""

    def __init__(self, columns: list[str], alpha: float) -> None:
        self.columns, self.alpha = list(columns), alpha

    def create_accumulator(self):
        return {c: QuantileSketch(self.alpha) for c in self.columns}

    def add_input(self, acc, element):
        for c in self.columns:
            acc[c].add(element["columns"][c])
        return acc

    def merge_accumulators(self, accs):
        """Folded in one at a time (a runner that streams a group's values, as Dataflow does,
        never has more than two in memory here)."""
        out = None
        for acc in accs:
            if out is None:
                out = acc
                continue
            for c in self.columns:
                out[c].merge(acc[c])
        return out if out is not None else self.create_accumulator()

    def extract_output(self, acc):
        return acc
