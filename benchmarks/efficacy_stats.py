"""The statistics of the efficacy protocol (``benchmarks/efficacy.py``): paired step ratios to
uniform, bootstrap intervals over seeds, fraction of seeds won, and the verdict rule.

Every number is paired by seed: seed s of a strategy and seed s of uniform share the model
initialisation, the sampler seed and the evaluation sets, so a per-seed ratio or difference
removes what the seed does to both. Intervals resample *seeds* (with replacement; the pairs stay
together) and take percentiles of the resampled statistic; a run that never reached the target
counts as an infinitely slow ratio (it can only push the median and the upper end up).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

LEVEL = 0.95
N_BOOT = 4000


def paired_ratios(strategy_steps: Sequence[float], uniform_steps: Sequence[float]) -> np.ndarray:
    """Per-seed ratio strategy steps / uniform steps to uniform's final metric (``inf`` where
    the strategy never reached it). Both lists are in seed order and of the same length."""
    a = np.asarray(strategy_steps, dtype=np.float64)
    b = np.asarray(uniform_steps, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("paired_ratios: need two non-empty lists of the same length")
    if np.isnan(a).any() or np.isnan(b).any() or (b <= 0).any() or not np.isfinite(b).all():
        raise ValueError("paired_ratios: uniform's steps must be finite and > 0; no NaN")
    return a / b


def _median(x: np.ndarray, axis: int = -1) -> np.ndarray:
    # the median of values that may be +inf: sorting then picking the middle pair; the mean of
    # a finite value and +inf is +inf, never NaN
    s = np.sort(x, axis=axis)
    n = s.shape[axis]
    lo = np.take(s, (n - 1) // 2, axis=axis)
    hi = np.take(s, n // 2, axis=axis)
    with np.errstate(invalid="ignore"):
        return np.where(lo == hi, lo, (lo + hi) / 2)


def median(x: Sequence[float]) -> float:
    return float(_median(np.asarray(x, dtype=np.float64)))


def bootstrap_ci(
    values: Sequence[float],
    stat: str | Callable[[np.ndarray], np.ndarray] = "median",
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` ("median", "mean" or a function of a
    (n_boot, n) array along its last axis) over the seeds in ``values``; deterministic for a
    given ``seed``. Values may be ``inf`` (a run that never got there)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or np.isnan(x).any():
        raise ValueError("bootstrap_ci: need a non-empty 1-D list without NaN")
    if not 0 < level < 1:
        raise ValueError("bootstrap_ci: level must be in (0, 1)")
    fn = {"median": _median, "mean": lambda a: a.mean(axis=-1)}.get(stat, stat)  # type: ignore[arg-type]
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    boot = np.sort(np.asarray(fn(x[idx])))
    a = (1 - level) / 2
    # order statistics (no interpolation, so inf stays inf instead of becoming NaN)
    lo = boot[int(math.floor(a * (n_boot - 1)))]
    hi = boot[int(math.ceil((1 - a) * (n_boot - 1)))]
    return float(lo), float(hi)


def win_fraction(ratios: Sequence[float]) -> float:
    """Fraction of seeds on which the strategy reached uniform's final metric in fewer steps
    than uniform (ratio < 1; a tie is not a win)."""
    r = np.asarray(ratios, dtype=np.float64)
    return float((r < 1.0).mean())


def verdict(ci: tuple[float, float]) -> str:
    """The README rule: a claim only where the whole interval is on one side of 1.0."""
    lo, hi = ci
    if hi < 1.0:
        return "faster"
    if lo > 1.0:
        return "slower"
    return "no clear difference"


def summarize(
    steps: Sequence[float],
    uniform_steps: Sequence[float],
    finals: Sequence[float],
    uniform_finals: Sequence[float],
    cost_per_step: float = 1.0,
    seed: int = 0,
    flops: Sequence[float] | None = None,
) -> dict:
    """One strategy's row: paired step ratios (median, 95 % CI, fraction of seeds won), the
    same in compute (ratio x ``cost_per_step``, the strategy's forward-pass FLOPs per step over
    uniform's; or, given ``flops``, the per-seed FLOPs ratios to the target, their median and
    CI), final metric (median and CI) and the paired difference to uniform's final."""
    r = paired_ratios(steps, uniform_steps)
    ci = bootstrap_ci(r, "median", seed=seed)
    if flops is None:
        f_med, f_ci = median(r) * cost_per_step, (ci[0] * cost_per_step, ci[1] * cost_per_step)
    else:
        fr = np.asarray(flops, dtype=np.float64)
        if fr.shape != r.shape or np.isnan(fr).any():
            raise ValueError("summarize: flops needs one ratio per seed, no NaN")
        f_med, f_ci = median(fr), bootstrap_ci(fr, "median", seed=seed)
    f = np.asarray(finals, dtype=np.float64)
    d = f - np.asarray(uniform_finals, dtype=np.float64)
    return {
        "ratios": [float(v) for v in r],
        "ratio_median": median(r),
        "ratio_ci": list(ci),
        "wins": win_fraction(r),
        "cost_per_step": cost_per_step,
        "flops_ratio_median": f_med,
        "flops_ratio_ci": list(f_ci),
        "flops_ratios": None if flops is None else [float(v) for v in flops],
        "final_median": median(f),
        "final_ci": list(bootstrap_ci(f, "median", seed=seed)),
        "final_diff_mean": float(d.mean()),
        "final_diff_ci": list(bootstrap_ci(d, "mean", seed=seed)),
        "verdict_steps": verdict(ci),
        "verdict_flops": verdict(tuple(f_ci)),
    }


# -- curves --------------------------------------------------------------------------------
def smooth(curve: list) -> list[tuple[int, float]]:
    vals = [v for _, v in curve]
    return [(s, float(np.mean(vals[max(0, i - 2) : i + 1]))) for i, (s, _) in enumerate(curve)]


def final(curve: list) -> float:
    return float(np.mean([v for _, v in curve[-3:]]))


def steps_to(curve: list, target: float, higher: bool) -> float:
    """First step whose trailing 3-point mean reaches ``target`` (inf if never)."""
    for s, v in smooth(curve):
        if (v >= target) if higher else (v <= target):
            return float(s)
    return math.inf


def auc(curve: list, higher: bool) -> float:
    """Selection score: mean metric over the evaluations (rewards getting good early)."""
    m = float(np.mean([v for _, v in curve]))
    return m if higher else -m
