"""Curriculum: draw uniformly among the items whose difficulty percentile is <= c(t).

Items are sorted by difficulty once (stable); at step t the eligible set is the prefix [0, m)
of the serving order with m = clamp(ceil(c(t) S), G, S), S = the servable records, and the batch
is a stratified draw of G distinct positions in it (when S < G every servable record is served
floor(G / S) or ceil(G / S) times, evenly). The serving order is the scored records easiest
first (an anti-curriculum pacing: hardest first), then the records without a difficulty (NaN):

    position p < F:  the p-th easiest (anti: the p-th hardest) scored record    F = #scored
    position p >= F: the (p - F)-th NaN record                                  (nan="last")

so NaN records are served last in both directions, and never with ``nan="exclude"`` (S = F).
O(G) per
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
from .base import Context, Strategy, check_nan_rule, rank_order, scored_count


class Curriculum(Strategy):
    name = "curriculum"
    any_batch = True
    bytes_per_item = 4

    def __init__(
        self,
        pacing: Pacing | Callable[[int], float],
        difficulty: str = "difficulty",
        nan: str = "last",
    ) -> None:
        self.pacing = as_pacing(pacing)
        self.difficulty = difficulty
        self.nan = check_nan_rule(nan, "Curriculum")

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        col = ctx.require(self.difficulty, "Curriculum")
        self.order = rank_order(col, ctx.device)  # scored ascending, NaN last
        self.scored = scored_count(col)
        self.servable = ctx.n if self.nan == "last" else self.scored
        if self.servable == 0:
            raise ValueError(
                f"Curriculum: no record has a {self.difficulty!r} value and nan='exclude'"
            )

    def fraction(self, step: int) -> float:
        c = self.pacing(step)
        if not (isinstance(c, float) and math.isfinite(c) and 0 < c <= 1):
            raise ValueError(
                f"pacing {self.pacing.name} returned {c!r} at step {step}; need (0, 1]"
            )
        return c

    def eligible(self, step: int, G: int) -> int:
        S = self.servable
        return min(S, max(G, math.ceil(self.fraction(step) * S)))

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        m = self.eligible(step, j.numel())
        pos = draw.positions(self.ctx.seed, step, j, m)  # G positions of the serving order
        if self.pacing.reverse:  # hardest scored first; NaN positions (>= F) stay last
            F = self.scored
            pos = torch.where(pos < F, (F - 1) - pos, pos)
        return draw.gather(self.order, pos), None

    def stats(self, step: int) -> dict[str, Any]:
        c = self.fraction(step)
        m = max(1, math.ceil(c * self.servable))
        return {"fraction": c, "eligible": m, "entropy": math.log(m)}

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pacing": self.pacing.name,
            "difficulty": self.difficulty,
            "nan": self.nan,
        }
