"""Sampling strategies: one small class per policy (see each module for formulas and sources).

Bytes per item held by each strategy (the Sampler adds 1 B for coverage and, when the source has
a ``difficulty`` column, 4 B float32 for served-difficulty stats):

| strategy           | per-item state                                  | bytes/item |
|--------------------|--------------------------------------------------|------------|
| Uniform            | none                                             | 0          |
| Curriculum         | difficulty order, int32                          | 4          |
| UCB                | group order int32 + item -> group int32          | 8          |
| EXP3               | group order int32 + item -> group int32          | 8          |
| AngleWindow        | angle order, int32                               | 4          |
| Prioritized        | float32 leaves + float64 32-ary sums (0.26 B)    | 5 (4.3)    |
| ProgressiveDropout | int32 leaves + int64 32-ary sums (0.26 B)        | 5 (4.3)    |
| PassRateFilter     | rate float32 + until int32 + int32 leaves, sums  | 13 (12.3)  |
| + group=          | + unseen tree, order + position int32, g int16   | 27 (26.6)  |

So with the Sampler's 5 B, Curriculum is 9 B/item and UCB 13 B/item (<= 16).
"""

from .angle import AngleWindow
from .base import Context, Strategy
from .curriculum import Curriculum
from .dropout import ProgressiveDropout
from .exp3 import EXP3
from .groups import GroupStrategy
from .passrate import PassRateFilter
from .prioritized import Prioritized
from .ucb import UCB
from .uniform import Uniform

__all__ = [
    "AngleWindow",
    "Context",
    "Curriculum",
    "EXP3",
    "GroupStrategy",
    "PassRateFilter",
    "Prioritized",
    "ProgressiveDropout",
    "Strategy",
    "UCB",
    "Uniform",
]
