"""gradum's Beam pipelines: the scoring job (``gradum score``) and its public transforms.

``from pipelines import ScoreTexts, WriteShards`` (:mod:`pipelines.transforms`) scores texts
inside your own Beam pipeline and writes a gradum dataset. Subpackages, by role: ``io``
(storage, formats, records), ``plan`` (the launcher's plan, read units), ``output`` (what a
job may write and delete), ``job`` (the graph and its steps, the launcher), ``model``
(scoring, clustering, the proxy), ``stats`` (ranks, sketches), ``console`` (progress, log),
``corpora`` (built-in corpora). This is the only package that imports apache_beam; importing
it alone does not (the transforms load lazily).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ScoreTexts", "WriteShards"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pipelines import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
