"""gradum scorers: difficulty signals, pure functions of a batch of texts (DESIGN §3).

>>> import scorers
>>> scorers.available()
['compression_ratio', 'embedding', 'length', 'lexical_diversity', 'lm', 'readability', 'word_rarity']
>>> s = scorers.get("compression_ratio", level=9)
>>> s.score(["some text"])["compression_ratio"].dtype
dtype('float32')

This module is light: the model scorers import torch / transformers /
sentence-transformers only when they are created and used (extra ``gradum[pipeline]``).
"""

from __future__ import annotations

import importlib
from typing import Any

from scorers.base import RowScorer, Scorer, ScoringError

_REGISTRY: dict[str, str] = {
    "length": "scorers.length:Length",
    "compression_ratio": "scorers.compression:CompressionRatio",
    "lexical_diversity": "scorers.mtld:LexicalDiversity",
    "readability": "scorers.readability:Readability",
    "word_rarity": "scorers.rarity:WordRarity",
    "lm": "scorers.lm:LanguageModelScorer",
    "embedding": "scorers.embedding:Embedding",
}


def available() -> list[str]:
    """Names accepted by :func:`get`, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **params: Any) -> Scorer:
    """Create the scorer ``name`` with its parameters (e.g. ``get("lm", model=path)``)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; available: {available()}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)(**params)


__all__ = ["RowScorer", "Scorer", "ScoringError", "available", "get"]
