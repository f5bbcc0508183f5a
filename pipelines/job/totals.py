"""Global combines read as singleton side inputs, without Beam's default injection.

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
