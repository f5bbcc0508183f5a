"""Length-bucketed batches for the model scorers (``lm``, ``embedding``).

A forward pass over a batch costs about ``batch size x longest length`` token positions
(every text is padded to the longest), so texts are sorted by length and cut into batches
by a budget of padded positions rather than by a fixed count: short texts go in large
batches, long ones in small batches, and little is spent on padding.
"""

from __future__ import annotations

from collections.abc import Sequence


def pack_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int) -> list[list[int]]:
    """Indices sorted by decreasing length (ties by index), cut into consecutive batches so
    that ``len(batch) * longest <= token_budget`` and ``len(batch) <= max_batch_size``.

    Every index appears exactly once. A length below 1 counts as 1. A text longer than the
    budget goes alone in its batch (the only way the budget is exceeded). Deterministic:
    the result depends only on ``lengths`` and the two limits.
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        ln = max(1, int(lengths[i]))
        new_longest = max(longest, ln)
        if cur and ((len(cur) + 1) * new_longest > token_budget or len(cur) >= max_batch_size):
            batches.append(cur)
            cur, new_longest = [], ln
        cur.append(i)
        longest = new_longest
    if cur:
        batches.append(cur)
    return batches
