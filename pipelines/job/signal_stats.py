"""The signal statistics of the written records: rank sketches (for difficulty) and value
sketches (the manifest's per-signal statistics). Both are combiners of counts: order-free,
bounded per worker, the same on any runner."""

from __future__ import annotations

import apache_beam as beam

from pipelines.stats import ranks
from pipelines.stats.sketch import QuantileSketch


class _LevelCounts(beam.DoFn):
    """One part's signal columns -> the next rank level's sparse counts, per column."""

    def __init__(self, columns: list[str], eps: float) -> None:
        self.columns, self.eps = list(columns), eps

    def process(self, element: dict, sketches: dict | None = None):
        cols = element["columns"]
        yield {
            c: (sketches[c] if sketches else ranks.RankSketch(self.eps)).level_counts(cols[c])
            for c in self.columns
        }


class _SumCounts(beam.CombineFn):
    """Sum the sparse counts of every part, per column (addition: order-free)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)

    def create_accumulator(self):
        return {c: [] for c in self.columns}

    def add_input(self, acc, counts):
        return {c: [ranks.merge_counts([*acc[c], counts[c]])] for c in self.columns}

    def merge_accumulators(self, accs):
        accs = list(accs)
        return {
            c: [ranks.merge_counts([part for acc in accs for part in acc[c]])] for c in self.columns
        }

    def extract_output(self, acc):
        return {c: ranks.merge_counts(acc[c]) for c in self.columns}


def _add_level(counts: dict, sketches: dict | None, eps: float) -> dict:
    return {
        c: (sketches[c] if sketches else ranks.RankSketch(eps)).add_level(counts[c]) for c in counts
    }


class RankSketches(beam.PTransform):
    """Per-part signal columns -> ``{column: RankSketch}`` refined until every bucket is
    small enough (at most ``len(ranks.LEVEL_BITS)`` passes over the columns)."""

    def __init__(self, columns: list[str], eps: float) -> None:
        super().__init__()
        self.columns, self.eps = list(columns), eps

    def expand(self, parts):
        sketches = None
        for level in range(len(ranks.LEVEL_BITS)):
            prev = beam.pvalue.AsSingleton(sketches) if sketches is not None else None
            counts = (
                parts
                | f"Count{level}" >> beam.ParDo(_LevelCounts(self.columns, self.eps), prev)
                | f"Sum{level}" >> beam.CombineGlobally(_SumCounts(self.columns))
            )
            sketches = counts | f"Level{level}" >> beam.Map(_add_level, prev, self.eps)
        return sketches


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
        accs = list(accs)
        out = accs[0]
        for acc in accs[1:]:
            for c in self.columns:
                out[c].merge(acc[c])
        return out

    def extract_output(self, acc):
        return acc
