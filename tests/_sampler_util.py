"""Shared helpers for the sampler tests (not collected: no test_ prefix)."""

from __future__ import annotations

import numpy as np
import torch

from sampler import Sampler, pacing
from sampler import strategies as S

N = 4096


def source(n: int = N, groups: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rs = np.random.default_rng(seed)
    return {
        "difficulty": rs.random(n).astype(np.float32),
        "cluster": rs.integers(0, groups, n).astype(np.int32),
        "angle_concentration": rs.random(n).astype(np.float32),
    }


def make(name: str):
    return {
        "uniform": lambda: S.Uniform(),
        "curriculum": lambda: S.Curriculum(pacing.root(50, p=2, c0=0.1)),
        "ucb": lambda: S.UCB(group="cluster", window=20),
        "ucb_loss_decrease": lambda: S.UCB(group="cluster", window=20, reward="loss_decrease"),
        "angle": lambda: S.AngleWindow(sigma=200.0, n=50.0),
        "prioritized": lambda: S.Prioritized(ema=0.5),
        "dropout": lambda: S.ProgressiveDropout(revision_step=15),
        "exp3": lambda: S.EXP3(group="cluster"),
        "passrate": lambda: S.PassRateFilter(ttl=4),
        "passrate_group": lambda: S.PassRateFilter(ttl=4, group="cluster"),
    }[name]()


NAMES = [
    "uniform",
    "curriculum",
    "ucb",
    "ucb_loss_decrease",
    "angle",
    "prioritized",
    "dropout",
    "exp3",
    "passrate",
    "passrate_group",
]


def feedback(step: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Deterministic synthetic feedback that depends on ids and step."""
    x = idx.to(torch.float64)
    return {
        "loss": torch.remainder(x * 0.618 + step * 0.1, 3.0),
        "advantage": torch.sin(x + step),
        "reward": (torch.remainder(x + step, 5) > 1).to(torch.float64),
        "correct": (torch.remainder(x * 7 + step, 11) < 3).to(torch.float64),
    }


def run(s: Sampler, steps: int) -> list[torch.Tensor]:
    out = []
    for _ in range(steps):
        b = s.sample()
        out.append(b.indices.clone())
        s.update(b.indices, **feedback(b.step, b.indices))
    return out


def states_equal(a, b) -> bool:
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(states_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return a == b
