"""The first records of the input, read by the launcher (the reference LM's training set)."""

from __future__ import annotations

from pipelines.io.formats import read_unit, read_whole
from pipelines.plan.inputs import plan_inputs
from pipelines.plan.units import plan_units


def read_sample(specs: list[str], n: int, text_field: str = "text") -> list[str]:
    """The texts of the first ``n`` parseable records with a text, in input order; it reads
    only as far as those ``n`` records."""
    texts: list[str] = []
    for unit in plan_units(plan_inputs(specs)):
        items = read_whole(unit[2], unit[3]) if unit[0] == "whole" else read_unit(unit)
        for item in items:
            if item[0] != "ok":
                continue
            text = item[3].get(text_field)
            if isinstance(text, str) and text.strip():
                texts.append(text)
                if len(texts) >= n:
                    return texts
    return texts
