"""Curriculum: draw uniformly among the items whose difficulty percentile is <= c(t).

Items are sorted by difficulty once (stable, NaN last); at step t the eligible set is the prefix
[0, m) of that order with m = clamp(ceil(c(t) N), G, N) (an anti-curriculum pacing takes the
suffix instead), and the batch is a stratified draw of G distinct positions in it: O(G) per
batch, no cluster files, no O(N) work (Platanios et al. 2019; DeepSpeed Data Efficiency
"percentile" difficulty, without its per-value files or its global-RNG resume bug).

Per-item state: the order as int32 (4 B; int64 beyond 2^31 items). Feedback is accepted and
ignored (the schedule is a function of the step only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import draw
from ..pacing import Pacing, as_pacing
from .base import Context, Strategy, rank_order


class Curriculum(Strategy):
    name = "curriculum"
    bytes_per_item = 4

    def __init__(
        self, pacing: Pacing | Callable[[int], float], difficulty: str = "difficulty"
    ) -> None:
        self.pacing = as_pacing(pacing)
        self.difficulty = difficulty

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        self.order = rank_order(ctx.require(self.difficulty, "Curriculum"), ctx.device)

    def fraction(self, step: int) -> float:
        c = self.pacing(step)
        if not (isinstance(c, float) and math.isfinite(c) and 0 < c <= 1):
            raise ValueError(
                f"pacing {self.pacing.name} returned {c!r} at step {step}; need (0, 1]"
            )
        return c

    def eligible(self, step: int, G: int) -> int:
        n = self.ctx.n
        return min(n, max(G, math.ceil(self.fraction(step) * n)))

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        n = self.ctx.n
        m = self.eligible(step, j.numel())
        pos = draw.positions(self.ctx.seed, step, j, m)
        if self.pacing.reverse:
            pos = (n - 1) - pos
        return draw.gather(self.order, pos), None

    def stats(self, step: int) -> dict[str, Any]:
        c = self.fraction(step)
        m = max(1, math.ceil(c * self.ctx.n))
        return {"fraction": c, "eligible": m, "entropy": math.log(m)}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "pacing": self.pacing.name, "difficulty": self.difficulty}
