"""Percentile ranks with a guarantee on the rank, order-free, in memory bounded by eps alone:
a refined radix histogram, compressed after every pass.

Each finite value becomes a 64-bit key that sorts like the value (the IEEE-754 bits, the sign
flipped; -0.0 counted as 0.0). The sketch is a sorted list of disjoint key intervals
``[lo, hi]`` with the number of values in each; ``lo`` and ``hi`` are the least and greatest
key counted in the interval (not its cell's bounds), so an interval of one distinct value is
exact however coarse its cell. Pass 0 counts keys by cell: their top 16 bits, each bucket cut
further at the *guide* keys if there is a guide (at most ``GUIDE_KEYS`` keys from a sample of
the values, each a cell of its own; :mod:`pipelines.job.rank_guide`). A cell holding more than
``floor(2 eps n)`` values is *heavy*: unless it holds one key (an exact value: ties,
integers), it stays *open*, and the next pass cuts each open interval ``[lo, hi]`` into cells
of ``2^s`` keys counted from ``lo``, with ``s`` as small as the budget allows (``H`` open
intervals x ``2^b`` cells each <= ``B``, so each interval's width loses ``b`` >= 8 bits).
After every pass the other intervals are coalesced greedily, left to right, into runs of at
most ``floor(eps n)`` values (a heavy interval stays alone).

The percentile rank of a value in an interval of ``c`` values with ``cum`` values below it is
``(cum + t) / n``: ``t`` interpolates the key linearly inside ``[lo, hi]``, clamped to
``[c - eps n, eps n]``; ``t = c / 2`` for an exact value; a value between intervals gets
``cum / n``. The exact mid-rank lies in ``[cum, cum + c] / n`` and every interval holds at most
``2 eps n`` values unless it is one exact value (then both are ``(cum + c / 2) / n``): **the
rank error is at most eps** (default 0.001), for any distribution: narrow ranges, heavy tails,
ties, negative values. Ranks are monotone in the value. NaN and infinities get NaN. The guide
changes only how many passes it takes, never the bound: any guide, or none, gives ranks within
eps; a guide from a uniform sample of 16,384 values leaves pass 0's cells about ``n / 16,384``
values each, far under ``2 eps n``, so continuous signals are complete after one pass.

Counts are integers, merging is addition, and the compression is a function of the summed
counts only, so the sketch is the same for any bundling, worker count, merge order or runner
(for a given guide, itself a pure function of the input).

Memory per signal, whatever the number of values ``n``:

- the sketch (the side input every worker holds): any two neighbouring intervals hold more
  than ``eps n`` values together, so there are at most ``2 ceil(1 / eps) + 1`` intervals
  (:func:`sketch_bound`), 24 bytes each (lo, hi, cumulative count): about
  ``24 (2 / eps + 1)`` bytes, 48 KiB at eps = 0.001; before pass 0, the guide's cell starts
  (at most ``2 GUIDE_KEYS + 1``, 8 bytes each: 256 KiB);
- a pass's counts (what a part sends, and the accumulator of the combiner that sums them): at
  most ``B = max(65,536, 256 floor(1 / (2 eps))) + 2 GUIDE_KEYS`` sparse entries
  (:func:`budget`; 160,768 at eps = 0.001), 32 bytes each (cell, count, least and greatest
  key): ``32 B`` bytes, 4.9 MiB at eps = 0.001.

A pass only needs the values inside intervals the previous pass left open:
:meth:`RankSketch.open_keys` gives them, so the job hands each pass only what the one before
found still open (most values after one pass, none once complete).

There are fewer than ``1 / (2 eps)`` heavy cells, so every pass after the first cuts each open
interval's width by at least ``floor(log2(B / floor(1 / (2 eps))))`` >= 8 bits: :func:`passes`
passes (7 at eps = 0.001) finish any distribution (499 clusters of keys whose widths step down
by 2^47, 2^32, 2^24, 2^16, 2^8 and 1 need all 7: ``tests/test_ranks.py::ladder``); once no
interval is open, a pass is a no-op.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

KEY_BITS = 64
FIRST_BITS = 16  # pass 0: sign, exponent and 4 mantissa bits
MIN_BITS = 8  # the least a later pass refines by (the budget guarantees it)
GUIDE_KEYS = 16_384  # the most guide keys pass 0 takes (2 cell bounds each)
_SIGN = np.uint64(1 << 63)
_TOP = np.uint64(KEY_BITS - FIRST_BITS)
_LOW = np.uint64(32)  # a pass-0 cell id: radix bucket << 32 | guide cell
_NO_KEYS = np.empty(0, np.uint64)
_EMPTY = (_NO_KEYS, np.empty(0, np.int64), _NO_KEYS, _NO_KEYS)
_TYPES = (np.uint64, np.int64, np.uint64, np.uint64)
Counts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # cell, count, least, greatest


def max_heavy(eps: float) -> int:
    """An upper bound on the heavy buckets of a pass: each holds more than 2 eps n values."""
    return max(1, math.floor(1 / (2 * eps)))


def budget(eps: float) -> int:
    """The most sparse entries one pass's counts may have, per signal."""
    return max(1 << FIRST_BITS, (1 << MIN_BITS) * max_heavy(eps)) + 2 * GUIDE_KEYS


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


def guide_edges(keys: np.ndarray) -> np.ndarray:
    """The cell starts a guide of (at most ``GUIDE_KEYS`` distinct) keys gives pass 0: 0, and
    each key and the key after it, so that a sampled value is a cell of its own."""
    keys = np.unique(np.asarray(keys, np.uint64))
    if len(keys) > GUIDE_KEYS:
        raise ValueError(f"a guide holds at most {GUIDE_KEYS} keys, not {len(keys)}")
    after = keys[keys < np.iinfo(np.uint64).max] + np.uint64(1)
    return np.unique(np.concatenate([np.zeros(1, np.uint64), keys, after]))


def _group(keys: np.ndarray, cells: np.ndarray) -> Counts:
    """Sorted ``keys`` and their (non-decreasing) cells -> cells, counts, least, greatest."""
    starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return cells[starts], (ends - starts).astype(np.int64), keys[starts], keys[ends - 1]


def merge_counts(parts) -> Counts:
    """Sum sparse ``(cell, count, least, greatest)`` histograms (counts add; the least and
    greatest keys are the min and max): the order of ``parts`` does not matter. Folds one part
    at a time, so it never holds more than two histograms at once; each fold is one stable sort
    of the two and segment reductions (``ufunc.reduceat``, not the far slower ``ufunc.at``)."""
    out = _EMPTY
    for part in parts:
        if not len(part[0]):
            continue
        if not len(out[0]):
            out = tuple(np.asarray(x, t) for x, t in zip(part, _TYPES, strict=True))
            continue
        both = [
            np.concatenate([a, np.asarray(b, t)]) for a, b, t in zip(out, part, _TYPES, strict=True)
        ]
        order = np.argsort(both[0], kind="stable")
        cells = both[0][order]
        starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
        out = (
            cells[starts],
            np.add.reduceat(both[1][order], starts),
            np.minimum.reduceat(both[2][order], starts),
            np.maximum.reduceat(both[3][order], starts),
        )
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


class _Cells:
    """How the next pass cuts each open interval ``[lo, hi]``: into cells of ``2^shift`` keys
    from ``lo`` (``shift`` = the bits of ``hi - lo`` less the pass's ``bits``), numbered from
    ``offset``; cell ids rise with the key."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, eps: float) -> None:
        bits = (budget(eps) // max(len(lo), 1)).bit_length() - 1
        widths = [int(h) - int(low) for low, h in zip(lo.tolist(), hi.tolist(), strict=True)]
        shifts = [max(0, w.bit_length() - bits) for w in widths]
        sizes = [(w >> s) + 1 for w, s in zip(widths, shifts, strict=True)]
        self.lo, self.hi = lo, hi
        self.shift = np.asarray(shifts, np.uint64)
        self.size = np.asarray(sizes, np.uint64)
        self.offset = np.concatenate([[0], np.cumsum(sizes, dtype=np.uint64)[:-1]]).astype(
            np.uint64
        )

    def locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's open interval (an index) and whether the key lies inside it."""
        j = np.searchsorted(self.lo, keys, "right") - 1
        at = np.maximum(j, 0)
        return at, (j >= 0) & (keys <= self.hi[at])

    def ids(self, keys: np.ndarray) -> np.ndarray:
        at, inside = self.locate(keys)
        if not inside.all():
            raise ValueError("a key outside the open intervals was counted")
        return self.offset[at] + ((keys - self.lo[at]) >> self.shift[at])

    def bounds(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        j = np.searchsorted(self.offset, ids, "right") - 1
        at = np.maximum(j, 0)
        sub = ids - self.offset[at]
        if np.any(j < 0) or np.any(sub >= self.size[at]):
            raise ValueError("a pass's counts name a cell that does not exist")
        lo = self.lo[at] + (sub << self.shift[at])
        room = self.hi[at] - lo
        span = (np.uint64(1) << self.shift[at]) - np.uint64(1)
        return lo, lo + np.minimum(room, span)


class RankSketch:
    """The intervals counted so far for one signal; :meth:`count_keys` counts the next pass,
    :meth:`add_level` makes the next sketch from its summed counts. ``guide``: keys (at most
    ``GUIDE_KEYS``, from a sample of the values) that cut pass 0's cells further."""

    def __init__(self, eps: float = 0.001, guide: np.ndarray | None = None) -> None:
        if not 0.0 < eps < 0.5:
            raise ValueError("eps must be in (0, 0.5)")
        self.eps = float(eps)
        self.n = 0
        self.passes = 0
        guide = np.unique(np.asarray(guide if guide is not None else _NO_KEYS, np.uint64))
        self.guide_keys = len(guide)
        self.edges = guide_edges(guide)  # pass 0's cell starts, beside the radix buckets
        self.lo = np.empty(0, np.uint64)
        self.hi = np.empty(0, np.uint64)
        self.cum = np.zeros(1, np.int64)  # values below each interval, then n
        self.cells: _Cells | None = None  # how the next pass cuts the open intervals

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

    def open_keys(self, keys: np.ndarray) -> np.ndarray:
        """The keys (of :func:`order_keys`) the next pass counts: every key before pass 0,
        then those inside open intervals (none once complete)."""
        keys = np.asarray(keys, np.uint64)
        if not self.passes:
            return keys
        if self.cells is None or not len(keys):
            return _NO_KEYS
        return keys[self.cells.locate(keys)[1]]

    def _ids(self, keys: np.ndarray) -> np.ndarray:
        if self.passes:
            return self.cells.ids(keys)
        top = (keys >> _TOP) << _LOW
        if len(self.edges) == 1:  # no guide: every key is in guide cell 0
            return top
        return top | (np.searchsorted(self.edges, keys, "right").astype(np.uint64) - np.uint64(1))

    def _bounds(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.passes:
            return self.cells.bounds(ids)
        top, guide = ids >> _LOW, ids & np.uint64(0xFFFFFFFF)
        if np.any(top >> np.uint64(FIRST_BITS)) or np.any(guide >= len(self.edges)):
            raise ValueError("a pass's counts name a cell that does not exist")
        at = guide.astype(np.int64)
        nxt = np.append(self.edges[1:] - np.uint64(1), np.iinfo(np.uint64).max)
        lo = np.maximum(top << _TOP, self.edges[at])
        return lo, np.minimum((top << _TOP) | ((np.uint64(1) << _TOP) - np.uint64(1)), nxt[at])

    def count_keys(self, keys: np.ndarray) -> Counts:
        """The next pass's sparse histogram of keys inside open intervals (what
        :meth:`open_keys` gives). At most :func:`budget` entries."""
        keys = np.asarray(keys, np.uint64)
        if (self.passes and self.complete) or not len(keys):
            return _EMPTY
        keys = np.sort(keys)
        return _group(keys, self._ids(keys))

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
        ids, c, lo, hi = (np.asarray(x, t) for x, t in zip(counts, _TYPES, strict=True))
        order = np.argsort(ids, kind="stable")
        ids, c, lo, hi = ids[order], c[order], lo[order], hi[order]
        if len(ids):
            low, high = self._bounds(ids)
            if np.any(lo < low) or np.any(hi > high) or np.any(hi < lo):
                raise ValueError("a pass's least and greatest keys do not lie in their cells")
        out = RankSketch(self.eps)
        out.passes, out.guide_keys = self.passes + 1, self.guide_keys
        out.n = self.n if self.passes else int(c.sum())
        if self.passes:
            opened = self._open()
            if int(c.sum()) != int(self.counts[opened].sum()):
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
        opened = out._open()
        if opened.any():
            out.cells = _Cells(lo[opened], hi[opened], self.eps)
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
            "guide_keys": self.guide_keys,
        }
