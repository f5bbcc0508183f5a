"""Pacing functions: training step t -> fraction c(t) in (0, 1] of the difficulty-sorted data.

``Curriculum`` serves items whose difficulty percentile is <= c(t) (Platanios et al., NAACL
2019, "Competence-based curriculum learning"; DeepSpeed Data Efficiency ``fixed_linear`` /
``fixed_root`` / ``fixed_discrete``). Formulas (T = total curriculum steps, c0 = start fraction):

- linear:     c = min(1, t (1 - c0) / T + c0)
- root:       c = min(1, (t (1 - c0^p) / T + c0^p)^(1/p))          (p = 2 is "sqrt")
- geometric:  c = min(1, c0 * (1 / c0)^(t / T))                     (exponential growth, CCL)
- step:       c = fractions[i] for the first i with t < boundaries[i], else fractions[-1]
- anti:       the same fraction, taken from the *hardest* end (anti-curriculum)
- cyclical:   triangle wave low -> high -> low with the given period (Kesgin & Amasyali 2023,
              sizes 0.25 -> 1 -> 0.25 ...)
- interleaved: sawtooth of easy-to-hard sweeps: c = c0 + (1 - c0) ((t mod P) / P) over each
              segment of P steps (Zhang et al. 2025, "Beyond Random Sampling")

Any callable ``step -> fraction`` also works. Invalid parameters raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = [
    "Pacing",
    "linear",
    "root",
    "geometric",
    "step",
    "anti",
    "cyclical",
    "interleaved",
    "as_pacing",
]


class Pacing:
    """A pacing function with a name (for logs / the preview CLI) and a direction."""

    reverse: bool = False

    def __init__(self, name: str, fn: Callable[[int], float], reverse: bool = False) -> None:
        self.name = name
        self._fn = fn
        self.reverse = reverse

    def __call__(self, t: int) -> float:
        return float(self._fn(t))

    def __repr__(self) -> str:
        return f"Pacing({self.name})"


def _check_T(T: float) -> None:
    if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
        raise ValueError(f"pacing: total steps T must be a finite number > 0, got {T!r}")


def _check_frac(name: str, c: float) -> None:
    if not (isinstance(c, (int, float)) and math.isfinite(c) and 0 < c <= 1):
        raise ValueError(f"pacing: {name} must be in (0, 1], got {c!r}")


def linear(T: float, c0: float = 0.01) -> Pacing:
    """c = min(1, t (1 - c0) / T + c0) (DeepSpeed ``fixed_linear``; Platanios 2019)."""
    _check_T(T)
    _check_frac("c0", c0)
    return Pacing(
        f"linear(T={T}, c0={c0})", lambda t: 1.0 if t >= T else min(1.0, t * (1 - c0) / T + c0)
    )


def root(T: float, p: float = 2.0, c0: float = 0.01) -> Pacing:
    """c = min(1, (t (1 - c0^p) / T + c0^p)^(1/p)) (Platanios 2019 "sqrt" for p = 2;
    DeepSpeed ``fixed_root`` with ``root_degree`` = p)."""
    _check_T(T)
    _check_frac("c0", c0)
    if not (isinstance(p, (int, float)) and math.isfinite(p) and p > 0):
        raise ValueError(f"pacing: root degree p must be > 0, got {p!r}")
    c0p = c0**p
    return Pacing(
        f"root(T={T}, p={p}, c0={c0})",
        lambda t: 1.0 if t >= T else min(1.0, (t * (1 - c0p) / T + c0p) ** (1.0 / p)),
    )


def geometric(T: float, c0: float = 0.01) -> Pacing:
    """c = min(1, c0 (1/c0)^(t/T)): exponential growth from c0 to 1 over T steps."""
    _check_T(T)
    _check_frac("c0", c0)
    return Pacing(
        f"geometric(T={T}, c0={c0})",
        lambda t: 1.0 if t >= T else min(1.0, c0 * (1.0 / c0) ** (t / T)),
    )


def step(boundaries: Sequence[int], fractions: Sequence[float]) -> Pacing:
    """Discrete stages (DeepSpeed ``fixed_discrete``): ``fractions[i]`` while
    ``t < boundaries[i]``, ``fractions[-1]`` afterwards; needs len(fractions) =
    len(boundaries) + 1 and increasing boundaries."""
    b = [int(x) for x in boundaries]
    f = [float(x) for x in fractions]
    if len(f) != len(b) + 1:
        raise ValueError("pacing.step: need len(fractions) == len(boundaries) + 1")
    if any(x >= y for x, y in zip(b, b[1:], strict=False)) or any(x < 0 for x in b):
        raise ValueError("pacing.step: boundaries must be >= 0 and strictly increasing")
    for x in f:
        _check_frac("each fraction", x)

    def fn(t: int) -> float:
        for bound, frac in zip(b, f, strict=False):
            if t < bound:
                return frac
        return f[-1]

    return Pacing(f"step({b}, {f})", fn)


def anti(inner: Pacing | Callable[[int], float]) -> Pacing:
    """Anti-curriculum: the fraction c(t) of ``inner`` is taken from the hardest end."""
    p = as_pacing(inner)
    return Pacing(f"anti({p.name})", p, reverse=not p.reverse)


def cyclical(period: float, low: float = 0.25, high: float = 1.0) -> Pacing:
    """Triangle wave: low at t = 0, high at t = period / 2, low again at t = period, ..."""
    _check_T(period)
    _check_frac("low", low)
    _check_frac("high", high)
    if low > high:
        raise ValueError("pacing.cyclical: low must be <= high")

    def fn(t: int) -> float:
        phase = (t % period) / period
        tri = 1.0 - abs(2.0 * phase - 1.0)
        return low + (high - low) * tri

    return Pacing(f"cyclical(period={period}, low={low}, high={high})", fn)


def interleaved(period: float, c0: float = 0.1) -> Pacing:
    """Sawtooth of repeated easy-to-hard sweeps: c = c0 + (1 - c0) ((t mod P) / P)."""
    _check_T(period)
    _check_frac("c0", c0)
    return Pacing(
        f"interleaved(period={period}, c0={c0})",
        lambda t: c0 + (1 - c0) * ((t % period) / period),
    )


def as_pacing(p: Pacing | Callable[[int], float]) -> Pacing:
    """Wrap any callable ``step -> fraction``."""
    if isinstance(p, Pacing):
        return p
    if not callable(p):
        raise ValueError(f"pacing must be callable, got {type(p).__name__}")
    return Pacing(getattr(p, "__name__", "custom"), p)
