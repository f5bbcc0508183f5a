"""The numbers behind the report page: row samples, rank correlation, per-cluster extremes and
dead-letter reasons. Plain numpy / pyarrow; no HTML here (see :mod:`shards.report`)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .paths import DEAD_LETTER_DIR
from .reader import ShardSet


def sample_indices(n: int, k: int, seed: int = 0) -> np.ndarray | None:
    """Sorted distinct row indices, ``k`` of ``n`` drawn uniformly; None when ``n <= k`` (all)."""
    if n <= k:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def numeric_columns(ss: ShardSet, names: list[str], rows: np.ndarray | None) -> list[np.ndarray]:
    """float64 arrays of ``names`` over ``rows`` (None: every row); nulls become NaN."""
    if rows is None:
        return [np.asarray(ss.column(n), dtype=np.float64) for n in names]
    t = ss.take(rows, columns=names)
    return [np.asarray(t.column(n).to_numpy(zero_copy_only=False), dtype=np.float64) for n in names]


def central_range(v: np.ndarray, tail: float = 0.005) -> tuple[float, float, int, int]:
    """``(lo, hi, below, above)``: the ``tail`` and ``1 - tail`` quantiles of the finite values
    and how many lie outside them, so that a few outliers do not squash a plot. ``v`` must hold
    at least one finite value."""
    v = v[np.isfinite(v)]
    lo, hi = (float(x) for x in np.quantile(v, [tail, 1.0 - tail]))
    if hi <= lo:  # (nearly) constant: keep the whole range
        lo, hi = float(v.min()), float(v.max())
    return lo, hi, int(np.count_nonzero(v < lo)), int(np.count_nonzero(v > hi))


def ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties given their average rank."""
    a = np.asarray(a)
    order = np.argsort(a, kind="stable")
    s = a[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    ends = np.r_[starts[1:], s.size]
    out = np.empty(s.size, dtype=np.float64)
    out[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN below 3 points or when one
    side is constant."""
    if x.size < 3:
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_matrix(cols: list[np.ndarray]) -> np.ndarray:
    """Pairwise Spearman's rho over the rows where every column is finite."""
    m = np.vstack([np.asarray(c, dtype=np.float64) for c in cols])
    m = m[:, np.all(np.isfinite(m), axis=0)]
    out = np.full((len(cols), len(cols)), np.nan)
    for i in range(len(cols)):
        for j in range(i, len(cols)):
            out[i, j] = out[j, i] = spearman(m[i], m[j])
    return out


@dataclass
class ClusterRow:
    """One cluster: its size, mean difficulty and its easiest / hardest texts."""

    cluster: int
    size: int
    mean_difficulty: float | None
    easiest: tuple[float, str] | None
    hardest: tuple[float, str] | None


def cluster_rows(ss: ShardSet, limit: int = 50) -> tuple[list[ClusterRow], int]:
    """Per-cluster rows, largest ``limit`` clusters first (ties: lower id), and the number of
    clusters in all. Rows with a null / NaN cluster are not counted in any cluster."""
    cl = np.asarray(ss.column("cluster"), dtype=np.float64)
    ok = np.isfinite(cl)
    ids, inv, sizes = np.unique(cl[ok].astype(np.int64), return_inverse=True, return_counts=True)
    keep = np.lexsort((ids, -sizes))[:limit]
    has_d = "difficulty" in ss.column_names and "text" in ss.column_names
    means: dict[int, float] = {}
    extremes: dict[int, tuple[int, int]] = {}
    if "difficulty" in ss.column_names and ids.size:
        d = np.asarray(ss.column("difficulty"), dtype=np.float64)[ok]
        rows_ok = np.flatnonzero(ok)
        good = np.isfinite(d)
        tot = np.bincount(inv[good], weights=d[good], minlength=ids.size)
        cnt = np.bincount(inv[good], minlength=ids.size)
        means = {int(j): float(tot[j] / cnt[j]) for j in keep if cnt[j]}
        # Sorted by (cluster, difficulty): a cluster's first row is its easiest, last its hardest.
        order = np.lexsort((d[good], inv[good]))
        g = inv[good][order]
        first = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
        last = np.r_[first[1:] - 1, g.size - 1]
        gr = rows_ok[good][order]
        extremes = {int(g[a]): (int(gr[a]), int(gr[b])) for a, b in zip(first, last, strict=True)}
    texts: dict[int, tuple[float, str]] = {}
    wanted = sorted({r for j in keep if int(j) in extremes for r in extremes[int(j)]})
    if has_d and wanted:
        t = ss.take(np.asarray(wanted), columns=["text", "difficulty"]).to_pydict()
        texts = {
            r: (float(dv), str(tx))
            for r, tx, dv in zip(wanted, t["text"], t["difficulty"], strict=True)
        }
    out = []
    for j in keep:
        e = extremes.get(int(j))
        out.append(
            ClusterRow(
                cluster=int(ids[j]),
                size=int(sizes[j]),
                mean_difficulty=means.get(int(j)),
                easiest=texts.get(e[0]) if e else None,
                hardest=texts.get(e[1]) if e else None,
            )
        )
    return out, int(ids.size)


@dataclass
class DeadLetterReason:
    """Dead letters sharing a stage and a reason pattern (the reason with numbers as N)."""

    stage: str
    pattern: str
    count: int
    example_reason: str
    example_where: str


@dataclass
class DeadLetterSummary:
    files: int = 0
    total: int = 0
    unreadable_lines: int = 0
    reasons: list[DeadLetterReason] = field(default_factory=list)


_NUMBER = re.compile(r"\d+")


def dead_letter_summary(root: str | os.PathLike) -> DeadLetterSummary:
    """Count ``OUT/dead_letter/*.jsonl`` lines by (stage, reason pattern), most frequent
    first, streaming the files. Lines that are not JSON objects are counted apart."""
    summary = DeadLetterSummary()
    groups: dict[tuple[str, str], DeadLetterReason] = {}
    for p in sorted((Path(root) / DEAD_LETTER_DIR).glob("*.jsonl")):
        summary.files += 1
        with open(p, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                summary.total += 1
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = None
                if not isinstance(rec, dict):
                    summary.unreadable_lines += 1
                    continue
                reason = str(rec.get("reason", "(no reason given)"))
                stage = str(rec.get("stage") or "-")
                key = (stage, _NUMBER.sub("N", reason))
                if key in groups:
                    groups[key].count += 1
                else:
                    groups[key] = DeadLetterReason(stage, key[1], 1, reason, _where(rec, p))
    summary.reasons = sorted(groups.values(), key=lambda r: (-r.count, r.stage, r.pattern))
    return summary


def _where(rec: dict[str, Any], path: Path) -> str:
    payload = rec.get("payload")
    if isinstance(payload, dict) and "source" in payload:
        return f"{payload.get('source')}:{payload.get('position')}"
    return f"{DEAD_LETTER_DIR}/{path.name}"
