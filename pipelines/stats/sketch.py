"""A mergeable quantile sketch with an explicit error bound and an order-free result: the
manifest's per-signal statistics (difficulty ranks come from ``pipelines.stats.ranks``, whose
guarantee is on the rank, not the value).

This is DDSketch (Masson, Rim, Lee, VLDB 2019): a value x != 0 falls in bucket
``i = ceil(log_gamma |x|)`` with ``gamma = (1 + alpha) / (1 - alpha)``; every quantile it
returns is within relative error ``alpha`` of the true value at that rank. Buckets are
plain counts, so merging is addition: the sketch of a corpus is the same whatever the
bundling, worker count or merge order. That is what makes difficulty (a percentile rank
read from this sketch) and therefore the shards byte-identical between runs.

Percentile rank of x: ``(count below x's bucket + count in it / 2) / n``: a mid-rank with
resolution one bucket (values within a factor gamma of each other share a rank).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_OFFSET = 1 << 20  # keeps bucket keys of positive values positive down to ~1e-300


class QuantileSketch:
    """Counts of values per logarithmic bucket; ``alpha`` is the relative error bound."""

    def __init__(self, alpha: float = 0.005) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = float(alpha)
        self._log_gamma = math.log((1.0 + alpha) / (1.0 - alpha))
        self.counts: dict[int, int] = {}
        self.n = 0
        self.nan_count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._frozen: tuple[int, np.ndarray, np.ndarray] | None = None  # sorted buckets, by n

    # building ---------------------------------------------------------------------------
    def keys(self, values: np.ndarray) -> np.ndarray:
        """Order-preserving integer bucket key of each finite value."""
        v = np.asarray(values, dtype=np.float64)
        mag = np.abs(v)
        with np.errstate(divide="ignore"):
            idx = np.ceil(np.log(np.where(mag > 0, mag, 1.0)) / self._log_gamma).astype(np.int64)
        return np.where(v > 0, idx + _OFFSET, np.where(v < 0, -(idx + _OFFSET), 0))

    def add(self, values: np.ndarray) -> QuantileSketch:
        v = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(v)
        self.nan_count += int((~finite).sum())
        v = v[finite]
        if v.size == 0:
            return self
        uniq, cnt = np.unique(self.keys(v), return_counts=True)
        for k, c in zip(uniq.tolist(), cnt.tolist(), strict=True):
            self.counts[k] = self.counts.get(k, 0) + c
        self.n += int(v.size)
        self.total += float(v.sum())
        self.total_sq += float((v * v).sum())
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        return self

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        if other.alpha != self.alpha:
            raise ValueError("cannot merge sketches with different alpha")
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c
        self.n += other.n
        self.nan_count += other.nan_count
        self.total += other.total
        self.total_sq += other.total_sq
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        return self

    # reading ----------------------------------------------------------------------------
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._frozen is not None and self._frozen[0] == self.n:
            return self._frozen[1], self._frozen[2]
        keys = np.array(sorted(self.counts), dtype=np.int64)
        counts = np.array([self.counts[k] for k in keys.tolist()], dtype=np.int64)
        self._frozen = (self.n, keys, counts)
        return keys, counts

    def rank(self, values: np.ndarray) -> np.ndarray:
        """Mid-rank percentile in [0, 1] of each value; NaN for non-finite values."""
        v = np.asarray(values, dtype=np.float64)
        out = np.full(v.shape, np.nan)
        if self.n == 0:
            return out
        keys, counts = self._sorted()
        below = np.concatenate([[0], np.cumsum(counts)])
        finite = np.isfinite(v)
        k = self.keys(v[finite])
        lo = np.searchsorted(keys, k, side="left")
        hi = np.searchsorted(keys, k, side="right")
        out[finite] = (below[lo] + 0.5 * (below[hi] - below[lo])) / self.n
        return out

    def _value(self, key: int) -> float:
        if key == 0:
            return 0.0
        gamma = math.exp(self._log_gamma)
        mag = 2.0 * gamma ** (abs(key) - _OFFSET) / (gamma + 1.0)
        return mag if key > 0 else -mag

    def quantiles(self, qs: np.ndarray) -> list[float]:
        """Values at quantiles ``qs`` (relative error <= alpha), clamped to [min, max]."""
        if self.n == 0:
            return [math.nan] * len(qs)
        keys, counts = self._sorted()
        cum = np.cumsum(counts)
        out = []
        for q in np.asarray(qs, dtype=np.float64):
            pos = int(np.searchsorted(cum, q * (self.n - 1), side="right"))
            value = self._value(int(keys[min(pos, len(keys) - 1)]))
            out.append(min(max(value, self.min), self.max))
        return out

    def stats(self) -> dict[str, Any]:
        """The manifest's per-column statistics, with 101 quantiles (0, 0.01, ..., 1)."""
        mean = self.total / self.n if self.n else math.nan
        var = max(self.total_sq / self.n - mean * mean, 0.0) if self.n else math.nan
        nan_to_none = lambda x: None if not math.isfinite(x) else x  # noqa: E731
        return {
            "count": self.n,
            "nan_count": self.nan_count,
            "mean": nan_to_none(mean),
            "std": nan_to_none(math.sqrt(var)) if self.n else None,
            "min": nan_to_none(self.min),
            "max": nan_to_none(self.max),
            "quantiles": [nan_to_none(x) for x in self.quantiles(np.linspace(0, 1, 101))],
            "sketch": {"kind": "ddsketch", "relative_error": self.alpha},
        }
