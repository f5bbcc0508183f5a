"""Prioritized: per-item priorities from feedback, P(i) = p_i^alpha / sum_k p_k^alpha
(prioritized experience replay, proportional variant: Schaul et al., ICLR 2016).

    p_i <- |signal_i| + eps                                (ema = 0, PER)
    p_i <- ema p_i + (1 - ema) (|signal_i| + eps)          (ema > 0, smoothed loss)
    importance weight w_i = (N P(i))^(-beta) / max_batch w

All items start at priority ``initial``. Draws: stratified targets over [0, total) descended
through a K-ary sum tree (``sampler.sumtree``: K = 32, flat top level of <= 16384 sums),
O(G K log_K N); colliding leaves move to the next item so a batch is distinct. Updates:
O(u K log_K N) (latest feedback wins for repeated ids).

Per-item state: float32 leaf priorities (4 B) + float64 internal sums (8 / (K - 1) = 0.26 B)
+ padding, about 4.3 B per item (``bytes_per_item`` = 5). Internal sums are float64 and are
recomputed from their children on every update, not updated by deltas, so round-off does not
accumulate and the tree is a pure function of the leaves (the state holds only the leaves).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import draw
from ..sumtree import SumTree
from .base import Context, Feedback, Strategy

_F32_MAX = float(torch.finfo(torch.float32).max)


class Prioritized(Strategy):
    name = "prioritized"
    bytes_per_item = 5
    weighted = True
    adaptive = True

    def __init__(
        self,
        signal: str = "loss",
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        ema: float = 0.0,
        initial: float = 1.0,
    ) -> None:
        if signal not in ("loss", "reward", "advantage"):
            raise ValueError(
                f"Prioritized: signal must be loss, reward or advantage, got {signal!r}"
            )
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"Prioritized: alpha must be > 0, got {alpha!r}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"Prioritized: beta must be >= 0, got {beta!r}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"Prioritized: eps must be > 0, got {eps!r}")
        if not (0 <= ema < 1):
            raise ValueError(f"Prioritized: ema must be in [0, 1), got {ema!r}")
        if not (math.isfinite(initial) and initial > 0):
            raise ValueError(f"Prioritized: initial must be > 0, got {initial!r}")
        self.signal, self.alpha, self.beta, self.eps = signal, alpha, beta, eps
        self.ema, self.initial = ema, initial

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        leaves = torch.full((ctx.n,), self.initial**self.alpha, dtype=torch.float32)
        self.tree = SumTree(leaves.to(ctx.device))

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = self.tree.total
        u = draw.strat_uniform(self.ctx.seed, step, j) * total
        leaf = self.tree.find(u)
        leaf = draw.make_distinct(leaf, self.ctx.n, j)
        return leaf, self.importance(leaf)

    def importance(self, ids: torch.Tensor) -> torch.Tensor:
        """Unnormalised importance weights w_i = (N P(i))^(-beta), P(i) = p_i^alpha / total
        (the Sampler divides by the batch maximum). Computed on the host in float64: ``pow``
        may differ in the last ulp between CPU and CUDA math libraries."""
        p = self.tree.get(ids).cpu().to(torch.float64) / self.tree.total
        return (self.ctx.n * p).clamp(min=1e-300) ** (-self.beta)

    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        if self.signal not in fb:
            raise ValueError(
                f"Prioritized(signal={self.signal!r}) needs update(..., {self.signal}=...)"
            )

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        if idx.numel() == 0:
            return
        keep = draw.last_occurrence(idx)
        idx = idx[keep]
        # priorities are computed on the host in float64 (pow differs in the last ulp between
        # CPU and CUDA math libraries), then written to the device tree
        new = fb[self.signal][keep].cpu().abs() + self.eps
        if self.ema > 0:
            old = self.tree.get(idx).cpu().to(torch.float64) ** (1.0 / self.alpha)
            new = self.ema * old + (1 - self.ema) * new
        # p^alpha saturates at the float32 maximum (a loss spike never makes a leaf inf)
        leaves = (new**self.alpha).clamp(max=_F32_MAX).to(torch.float32).to(self.ctx.device)
        self.tree.set(idx, leaves, unique=True)

    def state_dict(self) -> dict[str, Any]:
        return {"leaves": self.tree.leaves().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        leaves = state["leaves"]
        if leaves.numel() != self.ctx.n:
            raise ValueError("Prioritized state: leaf count does not match the source")
        self.tree = SumTree(leaves.to(self.ctx.device, torch.float32))

    def stats(self, step: int) -> dict[str, Any]:
        """Entropy -sum P log P and effective sample size 1 / sum P^2 of P(i) (host float64,
        fixed-association sums: the same numbers on every device; O(N), for logs)."""
        p = self.tree.leaves().cpu().to(torch.float64)
        p = p / draw.pairwise_sum(p)
        ent = float(-draw.pairwise_sum(p * torch.log(p.clamp(min=1e-300))))
        return {
            "entropy": ent,
            "ess": float(1.0 / draw.pairwise_sum(p * p)),
            "total_priority": self.tree.total,
        }

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "signal": self.signal, "alpha": self.alpha, "beta": self.beta}
