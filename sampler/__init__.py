"""gradum sampler: a GPU-resident online sampler (curriculum pacing, UCB bandits over groups,
Gaussian rank windows, prioritized replay, progressive dropout) with feedback, exact resume and
many-rank support. Imports ``shards`` only, lazily.

    from sampler import Sampler, strategies, pacing
    s = Sampler({"difficulty": d}, strategies.Curriculum(pacing.root(10_000)), batch_size=32)
    for batch in s:            # batch.indices: LongTensor of row ids
        ...
        s.update(batch.indices, loss=per_example_loss)

Reducible-loss selection (RHO-LOSS) lives in ``sampler.selection``: ``select(candidates, loss,
irreducible, keep)`` keeps the top fraction of a candidate batch, ``reducible_loss`` feeds
``Prioritized``.
"""

from . import pacing, strategies
from .core import Batch, Sampler
from .selection import Selection, reducible_loss, select

__all__ = [
    "Batch",
    "Sampler",
    "Selection",
    "pacing",
    "reducible_loss",
    "select",
    "strategies",
]
