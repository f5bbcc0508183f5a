"""What ``gradum shards report`` and ``gradum demo`` add from other packages.

``shards`` may import no other gradum package, and ``pipelines`` may not import ``sampler``,
so the report accepts extra sections from a provider and the demo a preview callable; the
dispatcher (which may import every package) hands them these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def report_sections(ss: Any) -> Sequence[Any]:
    """The sampler's curriculum preview of the dataset ``ss`` (a ``shards.ShardSet``)."""
    from sampler.preview import report_sections as preview_sections

    return preview_sections(ss)


def curriculum_preview(out: str) -> int:
    """Print ``gradum preview OUT --strategy curriculum`` (1,000 steps, batch 64); its status."""
    from sampler.cli import main as sampler_main

    return sampler_main(
        ["preview", out, "--strategy", "curriculum", "--steps", "1000", "--batch-size", "64"]
    )
