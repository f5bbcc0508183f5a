"""Global combines read as singleton side inputs, without Beam's default injection, and the
small combiners of the job's totals.

``beam.CombineGlobally(fn)`` adds three steps (and two stages) to emit ``fn``'s value for an
empty input. Every global combine of the job is read as a singleton side input, and Beam's
``AsSingleton`` takes that empty value itself (``default_value``), so the job combines
``without_defaults()`` and hands the empty value to the view: the same values on any input,
a third fewer steps in the graph (build, submission and the local runner's per-stage costs
all grow with the steps).
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.transforms.core import CombineFn


class Total:
    """``pcoll | CombineGlobally(fn).without_defaults()`` and its empty value."""

    def __init__(self, pcoll, label: str, fn: Any) -> None:
        self.fn = CombineFn.maybe_from_callable(fn)
        self.pcoll = pcoll | label >> beam.CombineGlobally(self.fn).without_defaults()

    def empty(self) -> Any:
        """What ``fn`` makes of no input."""
        return self.fn.extract_output(self.fn.create_accumulator())

    def side(self) -> beam.pvalue.AsSingleton:
        """The combined value as a side input (``empty()`` when the input was empty)."""
        return beam.pvalue.AsSingleton(self.pcoll, default_value=self.empty())


class RuntimeCombineFn(beam.CombineFn):
    """``(scorer, how it ran, rows)`` per part -> ``{scorer: [{..how.., "rows": n}, ...]}``:
    what the workers used (a model's backend, device, dtype), with the rows each way scored."""

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, acc: dict, item: tuple) -> dict:
        name, how, rows = item
        acc[(name, how)] = acc.get((name, how), 0) + rows
        return acc

    def merge_accumulators(self, accs) -> dict:
        out: dict = {}
        for acc in accs:
            for k, v in acc.items():
                out[k] = out.get(k, 0) + v
        return out

    def extract_output(self, acc: dict) -> dict:
        out: dict = {}
        for (name, how), rows in sorted(acc.items()):
            out.setdefault(name, []).append({**dict(how), "rows": rows})
        return out


class SumFields(beam.CombineFn):
    """Field-wise sums of fixed-length tuples of numbers (one combiner for several counts)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def create_accumulator(self) -> tuple:
        return (0,) * self.width

    def add_input(self, acc: tuple, row: tuple) -> tuple:
        return tuple(a + b for a, b in zip(acc, row, strict=True))

    def merge_accumulators(self, accs) -> tuple:
        out = self.create_accumulator()
        for acc in accs:
            out = self.add_input(out, acc)
        return out

    def extract_output(self, acc: tuple) -> tuple:
        return acc
