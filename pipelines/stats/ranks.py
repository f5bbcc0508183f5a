"""Percentile ranks with a guarantee on the rank, order-free, in memory bounded by eps alone:
a refined radix histogram, compressed after every pass.

Each finite value becomes a 64-bit key that sorts like the value (the IEEE-754 bits, the sign
flipped; -0.0 counted as 0.0). The sketch is a sorted list of disjoint key intervals
``[lo, hi]`` with the number of values in each; ``lo`` and ``hi`` are the least and greatest
key counted in the interval (not its bucket's bounds), so an interval of one distinct value is
exact however coarse its bucket. Pass 0 counts keys by their top 16 bits.
A bucket holding more than ``floor(2 eps n)`` values is *heavy*: unless it holds one key (an
exact value: ties, integers), it stays *open* and the next pass counts the keys inside open buckets by their
next ``b`` bits, as many as the budget allows (``H`` open buckets x ``2^b`` sub-buckets <=
``B``; at least 8). After every pass the other intervals are coalesced greedily, left to
right, into runs of at most ``floor(eps n)`` values (a heavy interval stays alone).

The percentile rank of a value in an interval of ``c`` values with ``cum`` values below it is
``(cum + t) / n``: ``t`` interpolates the key linearly inside ``[lo, hi]``, clamped to
``[c - eps n, eps n]``; ``t = c / 2`` for an exact value; a value between intervals gets
``cum / n``. The exact mid-rank lies in ``[cum, cum + c] / n`` and every interval holds at most
``2 eps n`` values unless it is one exact value (then both are ``(cum + c / 2) / n``): **the
rank error is at most eps** (default 0.001), for any distribution: narrow ranges, heavy tails,
ties, negative values. Ranks are monotone in the value. NaN and infinities get NaN.

Counts are integers, merging is addition, and the compression is a function of the summed
counts only, so the sketch is the same for any bundling, worker count, merge order or runner.

Memory per signal, whatever the number of values ``n``:

- the sketch (the side input every worker holds): any two neighbouring intervals hold more
  than ``eps n`` values together, so there are at most ``2 ceil(1 / eps) + 1`` intervals
  (:func:`sketch_bound`), 24 bytes each (lo, hi, cumulative count): about
  ``24 (2 / eps + 1)`` bytes, 48 KiB at eps = 0.001;
- a pass's counts (what a part sends, and the accumulator of the combiner that sums them): at
  most ``B = max(65,536, 256 floor(1 / (2 eps)))`` sparse entries (:func:`budget`; 128,000 at
  eps = 0.001), 32 bytes each (bucket, count, least and greatest key): ``32 B`` bytes, 4 MiB at
  eps = 0.001.

A pass only needs the values inside intervals the previous pass left open:
:meth:`RankSketch.open_keys` gives them, so the job hands each pass only what the one before
found still open (most values after one pass, none once complete).

There are fewer than ``1 / (2 eps)`` heavy buckets, so every pass refines by at least
``floor(log2(B / floor(1 / (2 eps))))`` >= 8 bits: :func:`passes` passes (7 at eps = 0.001)
finish any distribution (499 heavy pairs of neighbouring floats need all 7); once no interval
is open, a pass is a no-op.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

KEY_BITS = 64
FIRST_BITS = 16  # pass 0: sign, exponent and 4 mantissa bits
MIN_BITS = 8  # the least a later pass refines by (the budget guarantees it)
_SIGN = np.uint64(1 << 63)
_NO_KEYS = np.empty(0, np.uint64)
_EMPTY = (_NO_KEYS, np.empty(0, np.int64), _NO_KEYS, _NO_KEYS)
_TYPES = (np.uint64, np.int64, np.uint64, np.uint64)
Counts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # bucket, count, least, greatest


def max_heavy(eps: float) -> int:
    """An upper bound on the heavy buckets of a pass: each holds more than 2 eps n values."""
    return max(1, math.floor(1 / (2 * eps)))


def budget(eps: float) -> int:
    """The most sparse entries one pass's counts may have, per signal."""
    return max(1 << FIRST_BITS, (1 << MIN_BITS) * max_heavy(eps))


def passes(eps: float) -> int:
    """The passes that finish any distribution (later ones are no-ops once none is heavy)."""
    bits = min(KEY_BITS - FIRST_BITS, (budget(eps) // max_heavy(eps)).bit_length() - 1)
    return 1 + math.ceil((KEY_BITS - FIRST_BITS) / bits)


def sketch_bound(eps: float) -> int:
    """The most intervals a sketch holds, whatever n."""
    return 2 * math.ceil(1 / eps) + 1


def order_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys that sort like the (finite, float64) ``values``."""
    v = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 -> 0.0
    bits = v.view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def _count(keys: np.ndarray, shift: np.uint64) -> Counts:
    """``keys`` by bucket ``key >> shift``: the buckets, their counts, least and greatest key."""
    if not len(keys):
        return _EMPTY
    keys = np.sort(keys)
    prefixes = keys >> shift
    starts = np.flatnonzero(np.r_[True, prefixes[1:] != prefixes[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return prefixes[starts], (ends - starts).astype(np.int64), keys[starts], keys[ends - 1]


def merge_counts(parts) -> Counts:
    """Sum sparse ``(bucket, count, least, greatest)`` histograms (counts add; the least and
    greatest keys are the min and max): the order of ``parts`` does not matter. Folds one part
    at a time, so it never holds more than two histograms at once."""
    out = _EMPTY
    for part in parts:
        if not len(part[0]):
            continue
        if not len(out[0]):
            out = tuple(np.asarray(x, t) for x, t in zip(part, _TYPES, strict=True))
            continue
        uniq, inverse = np.unique(np.concatenate([out[0], part[0]]), return_inverse=True)
        weights = np.concatenate([out[1], part[1]]).astype(np.float64)
        counts = np.bincount(inverse, weights=weights, minlength=len(uniq)).astype(np.int64)
        least = np.full(len(uniq), np.iinfo(np.uint64).max, np.uint64)
        np.minimum.at(least, inverse, np.concatenate([out[2], part[2]]))
        greatest = np.zeros(len(uniq), np.uint64)
        np.maximum.at(greatest, inverse, np.concatenate([out[3], part[3]]))
        out = (uniq, counts, least, greatest)
    return out


def _coalesce(lo, hi, counts, cap):
    """Greedy, left to right: consecutive intervals join while their sum stays <= cap; an
    interval over cap (heavy: open, or one exact value) stays alone."""
    if not len(counts):
        return lo, hi, counts
    cum = np.concatenate([[0], np.cumsum(counts)])
    starts = []
    i, m = 0, len(counts)
    while i < m:
        starts.append(i)
        if counts[i] > cap:
            i += 1
            continue
        i = max(i + 1, int(np.searchsorted(cum, cum[i] + cap, "right")) - 1)
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.append(starts[1:], m) - 1
    return lo[starts], hi[ends], np.add.reduceat(counts, starts)


class RankSketch:
    """The intervals counted so far for one signal; :meth:`level_counts` counts the next pass,
    :meth:`add_level` makes the next sketch from its summed counts."""

    def __init__(self, eps: float = 0.001) -> None:
        if not 0.0 < eps < 0.5:
            raise ValueError("eps must be in (0, 0.5)")
        self.eps = float(eps)
        self.n = 0
        self.passes = 0
        self.shift = KEY_BITS  # open intervals are the buckets ``key >> shift``
        self.lo = np.empty(0, np.uint64)
        self.hi = np.empty(0, np.uint64)
        self.cum = np.zeros(1, np.int64)  # values below each interval, then n

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.cum)

    @property
    def max_bucket(self) -> int:
        """The most values an interval may hold and still not be refined."""
        return int(2 * self.eps * self.n)

    def _open(self) -> np.ndarray:
        return (self.counts > self.max_bucket) & (self.lo != self.hi)

    @property
    def complete(self) -> bool:
        """Whether no interval needs another pass."""
        return self.passes > 0 and not self._open().any()

    def _next_shift(self) -> int:
        if not self.passes:
            return KEY_BITS - FIRST_BITS
        heavy = int(self._open().sum())
        bits = (budget(self.eps) // max(heavy, 1)).bit_length() - 1
        return max(0, self.shift - bits)

    def open_keys(self, keys: np.ndarray) -> np.ndarray:
        """The keys (of :func:`order_keys`) the next pass counts: every key before pass 0,
        then those inside open intervals (none once complete)."""
        keys = np.asarray(keys, np.uint64)
        if not self.passes:
            return keys
        opened = self._open()
        if not opened.any():
            return _NO_KEYS
        shift = np.uint64(self.shift)
        return keys[np.isin(keys >> shift, self.lo[opened] >> shift)]

    def count_keys(self, keys: np.ndarray) -> Counts:
        """The next pass's sparse histogram of keys inside open intervals (what
        :meth:`open_keys` gives). At most :func:`budget` entries."""
        if self.passes and self.complete:
            return _EMPTY
        return _count(np.asarray(keys, np.uint64), np.uint64(self._next_shift()))

    def level_counts(self, values: np.ndarray) -> Counts:
        """The next pass's sparse histogram of one part of the values (finite ones only):
        pass 0 counts every key; a later pass only the keys inside open intervals."""
        v = np.asarray(values, dtype=np.float64).ravel()
        return self.count_keys(self.open_keys(order_keys(v[np.isfinite(v)])))

    def add_level(self, counts: Counts) -> RankSketch:
        """A new sketch: this one with a pass counted over all values (the sum of every part's
        level_counts) and compressed. ``self`` is never changed (Beam side inputs are
        immutable); once complete, the same sketch comes back (the job runs every pass)."""
        if self.passes and self.complete:
            return self
        keys, c, lo, hi = (np.asarray(x, t) for x, t in zip(counts, _TYPES, strict=True))
        order = np.argsort(keys, kind="stable")
        keys, c, lo, hi = keys[order], c[order], lo[order], hi[order]
        out = RankSketch(self.eps)
        out.passes, out.shift = self.passes + 1, self._next_shift()
        out.n = self.n if self.passes else int(c.sum())
        shift = np.uint64(out.shift)
        if np.any((lo >> shift) != keys) or np.any((hi >> shift) != keys) or np.any(hi < lo):
            raise ValueError("a pass's least and greatest keys do not lie in their buckets")
        if self.passes:
            opened = self._open()
            parents = np.unique(lo >> np.uint64(self.shift))
            want = self.lo[opened] >> np.uint64(self.shift)
            if int(c.sum()) != int(self.counts[opened].sum()) or not np.isin(parents, want).all():
                raise ValueError("a pass's counts do not add up to the open intervals' counts")
            closed = ~opened
            lo = np.concatenate([self.lo[closed], lo])
            hi = np.concatenate([self.hi[closed], hi])
            c = np.concatenate([self.counts[closed], c])
            order = np.argsort(lo, kind="stable")
            lo, hi, c = lo[order], hi[order], c[order]
        lo, hi, c = _coalesce(lo, hi, c, int(self.eps * out.n))
        out.lo, out.hi = lo, hi
        out.cum = np.concatenate([[0], np.cumsum(c)]).astype(np.int64)
        return out

    def rank(self, values: np.ndarray) -> np.ndarray:
        """Percentile rank in [0, 1] of each value (NaN for non-finite ones), within eps of
        its exact mid-rank among the counted values."""
        v = np.asarray(values, dtype=np.float64)
        out = np.full(v.shape, np.nan)
        finite = np.isfinite(v)
        if self.n == 0 or not finite.any():
            return out
        keys = order_keys(v[finite])
        pos = np.searchsorted(self.lo, keys, "right") - 1  # the interval starting at or below
        at = np.maximum(pos, 0)
        inside = (pos >= 0) & (keys <= self.hi[at])
        lo, hi, cum = self.lo[at], self.hi[at], self.cum[at]
        c = (self.cum[at + 1] - cum).astype(np.float64)
        width = (hi - lo).astype(np.float64)
        frac = np.where(width > 0, (keys - lo).astype(np.float64) / np.maximum(width, 1), 0.5)
        slack = self.eps * self.n
        t = np.where(lo == hi, c / 2, np.clip(c * frac, c - slack, slack))
        t = np.minimum(np.maximum(t, 0.0), c)
        below = np.where(inside, cum + t, self.cum[pos + 1])
        out[finite] = below / self.n
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "radix histogram, refined and coalesced",
            "max_rank_error": self.eps,
            "passes": self.passes,
            "intervals": len(self.lo),
        }
