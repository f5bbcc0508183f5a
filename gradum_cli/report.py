"""What ``gradum shards report`` adds to the page from other packages.

``shards`` may import no other gradum package, so the report accepts extra sections from a
provider, and the dispatcher (which may import every package) hands it this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def report_sections(ss: Any) -> Sequence[Any]:
    """The sampler's curriculum preview of the dataset ``ss`` (a ``shards.ShardSet``)."""
    from sampler.preview import report_sections as preview_sections

    return preview_sections(ss)
