"""Difficulty in [0, 1] from several signals, and its bucket.

``difficulty = sum_s w_s r_s / sum_s w_s`` where ``r_s`` is the record's percentile rank
under signal s, flipped (``1 - rank``) for signals whose direction is -1 (larger = easier),
and the sums run over the signals that are finite for this record. A record with no
finite signal gets NaN and bucket -1. ``bucket = min(floor(difficulty * B), B - 1)``.
Percentile ranks make signals on different scales comparable without assuming any
distribution (the approach of Platanios et al. 2019, "Competence-based curriculum").
"""

from __future__ import annotations

import numpy as np


def parse_weights(spec: str | None, available: dict[str, int]) -> dict[str, float]:
    """``"perplexity:2,readability"`` -> ``{"perplexity": 2.0, "readability": 1.0}``.

    ``None`` means every available signal with a direction, weight 1. Unknown names and
    non-positive weights raise ``ValueError``.
    """
    if spec is None or not spec.strip():
        return {name: 1.0 for name, d in available.items() if d != 0}
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, _, w = part.strip().partition(":")
        if name not in available or available[name] == 0:
            usable = sorted(k for k, d in available.items() if d != 0)
            raise ValueError(f"--difficulty names {name!r}, not a scored signal; have {usable}")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise ValueError(f"--difficulty weight for {name!r} is not a number: {w!r}") from None
        if not weight > 0:
            raise ValueError(f"--difficulty weight for {name!r} must be > 0")
        weights[name] = weight
    return weights


def combine(
    ranks: dict[str, np.ndarray], directions: dict[str, int], weights: dict[str, float]
) -> np.ndarray:
    """Weighted mean of direction-adjusted ranks, skipping NaN per record; float32."""
    num = None
    den = None
    for name, w in weights.items():
        r = np.asarray(ranks[name], dtype=np.float64)
        if directions[name] < 0:
            r = 1.0 - r
        ok = np.isfinite(r)
        term = np.where(ok, r * w, 0.0)
        wt = np.where(ok, w, 0.0)
        num = term if num is None else num + term
        den = wt if den is None else den + wt
    if num is None:
        raise ValueError("no difficulty signals")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def buckets(difficulty: np.ndarray, n_buckets: int) -> np.ndarray:
    d = np.asarray(difficulty, dtype=np.float64)
    b = np.minimum(np.floor(np.nan_to_num(d, nan=-1.0) * n_buckets), n_buckets - 1)
    return np.where(np.isfinite(d), b, -1).astype(np.int16)
