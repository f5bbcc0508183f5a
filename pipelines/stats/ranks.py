"""Percentile ranks with a guarantee on the rank, order-free: a refined radix histogram.

Each finite value becomes a 64-bit key that sorts like the value (the IEEE-754 bits, the sign
flipped; -0.0 counted as 0.0). Pass 0 counts keys by their top 16 bits. A bucket holding more
than ``2 eps n`` values is *heavy*; pass ``l`` (l = 1..4) counts the keys of heavy buckets by
their next 12 bits. After pass 4 a bucket is one exact value. The percentile rank of a value
is the mid-rank of its finest bucket::

    rank(x) = (number of values in buckets before x's bucket + count(x's bucket) / 2) / n

For a value whose bucket holds ``c`` values the exact mid-rank ``(less + equal / 2) / n`` lies
within ``c / 2n`` of that, and every finest bucket holds at most ``2 eps n`` values unless
it is one exact value (then the two agree): **the rank error is at most eps** (default
0.001), for any distribution: narrow ranges, heavy tails, ties, negative values.

Counts are integers and merging is addition, so the result is the same for any bundling,
worker count, merge order or runner. Memory per worker and signal: pass 0 at most 65,536
buckets (1 MiB); a later pass at most 1 / (2 eps) heavy buckets x 4,096 sub-buckets, which
is 2,048,000 entries (32 MiB) at eps = 0.001 in the worst case and far less in practice
(buckets are counted sparsely, only where values fall). NaN and infinities get no rank (NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

LEVEL_BITS = (16, 12, 12, 12, 12)
_SHIFTS = tuple(64 - sum(LEVEL_BITS[: i + 1]) for i in range(len(LEVEL_BITS)))
_SIGN = np.uint64(1 << 63)


def order_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys that sort like the (finite, float64) ``values``."""
    v = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 -> 0.0
    bits = v.view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def _count(prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, counts = np.unique(prefixes, return_counts=True)
    return uniq, counts.astype(np.int64)


def merge_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sum sparse ``(prefixes, counts)`` histograms: the order of ``parts`` does not matter."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    keys = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)


class RankSketch:
    """The levels counted so far for one signal; :meth:`level_counts` makes the next one."""

    def __init__(self, eps: float = 0.001) -> None:
        if not 0.0 < eps < 0.5:
            raise ValueError("eps must be in (0, 0.5)")
        self.eps = float(eps)
        self.n = 0
        self.levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # keys, counts, cum

    @property
    def max_bucket(self) -> int:
        """The most values a bucket may hold and still not be refined."""
        return int(2 * self.eps * self.n)

    @property
    def complete(self) -> bool:
        """Whether no bucket needs another pass."""
        if not self.levels:
            return False
        return len(self.levels) == len(LEVEL_BITS) or not len(self._heavy())

    def _heavy(self) -> np.ndarray:
        keys, counts, _ = self.levels[-1]
        return keys[counts > self.max_bucket]

    def level_counts(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The next level's sparse histogram of one part of the values (finite ones only):
        pass 0 counts every key; a later pass only the keys inside heavy buckets."""
        level = len(self.levels)
        if level and self.complete:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        v = np.asarray(values, dtype=np.float64).ravel()
        keys = order_keys(v[np.isfinite(v)])
        if level == 0:
            return _count(keys >> np.uint64(_SHIFTS[0]))
        heavy = self._heavy()
        parent = keys >> np.uint64(_SHIFTS[level - 1])
        inside = np.isin(parent, heavy)
        return _count(keys[inside] >> np.uint64(_SHIFTS[level]))

    def add_level(self, counts: tuple[np.ndarray, np.ndarray]) -> RankSketch:
        """A new sketch: this one with a level counted over all values appended (the sum of
        every part's level_counts). ``self`` is never changed (Beam side inputs are
        immutable); once complete, the same sketch comes back (the job runs every pass)."""
        if self.levels and self.complete:
            return self
        keys, c = counts
        out = RankSketch(self.eps)
        out.n = int(c.sum()) if not self.levels else self.n
        order = np.argsort(keys)
        keys, c = keys[order], c[order]
        out.levels = [*self.levels, (keys, c, np.concatenate([[0], np.cumsum(c)]))]
        return out

    def rank(self, values: np.ndarray) -> np.ndarray:
        """Mid-rank percentile in [0, 1] of each value (NaN for non-finite ones)."""
        v = np.asarray(values, dtype=np.float64)
        out = np.full(v.shape, np.nan)
        finite = np.isfinite(v)
        if self.n == 0 or not finite.any():
            return out
        keys = order_keys(v[finite])
        below = np.zeros(keys.shape, dtype=np.int64)
        bucket = np.zeros(keys.shape, dtype=np.int64)  # count of the finest bucket so far
        active = np.ones(keys.shape, dtype=bool)  # still inside a heavy (refined) bucket
        for level, (lkeys, counts, cum) in enumerate(self.levels):
            prefix = keys >> np.uint64(_SHIFTS[level])
            pos = np.searchsorted(lkeys, prefix)
            first = 0
            if level:  # the parent's first child: children before this one count as below
                bits = np.uint64(LEVEL_BITS[level])
                first = np.searchsorted(lkeys, prefix >> bits << bits)
            at = np.minimum(pos, len(lkeys) - 1)
            found = (pos < len(lkeys)) & (lkeys[at] == prefix)
            below = np.where(active, below + cum[pos] - cum[first], below)
            bucket = np.where(active, np.where(found, counts[at], 0), bucket)
            active &= found & (bucket > self.max_bucket)
        out[finite] = (below + 0.5 * bucket) / self.n
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "radix histogram, refined",
            "max_rank_error": self.eps,
            "passes": len(self.levels),
            "buckets": int(sum(len(k) for k, _, _ in self.levels)),
        }
