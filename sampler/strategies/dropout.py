"""ProgressiveDropout (difficulty-based progressive data dropout, DBPD: "Progressive Data
Dropout", NeurIPS 2025, arXiv 2505.22342): items the model already gets right are dropped from
sampling; from ``revision_step`` on, training revisits the full data (the revision phase).

An item is dropped when feedback says ``correct`` (>= 0.5), or, without ``correct``, when its
loss is below ``loss_threshold`` (if one is set). Dropped items stay dropped until revision.
Before revision, batches are stratified over the k-th active item (exact selection through an
int32 count tree with int64 internal sums, K-ary: O(G K log_K N)); if fewer than G items remain
active, the step serves uniformly over all items (early revision). Per-item state: int32 leaf
counts (4 B) + int64 internal sums (about 0.26 B), 5 B per item.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import draw
from ..sumtree import SumTree
from .base import Context, Feedback, Strategy


class ProgressiveDropout(Strategy):
    name = "dropout"
    bytes_per_item = 5
    adaptive = True

    def __init__(self, revision_step: int, loss_threshold: float | None = None) -> None:
        if int(revision_step) != revision_step or revision_step < 0:
            raise ValueError(
                f"ProgressiveDropout: revision_step must be an int >= 0, got {revision_step!r}"
            )
        if loss_threshold is not None and not math.isfinite(loss_threshold):
            raise ValueError("ProgressiveDropout: loss_threshold must be finite")
        self.revision_step = int(revision_step)
        self.loss_threshold = loss_threshold

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        self.tree = SumTree(torch.ones(ctx.n, dtype=torch.int32, device=ctx.device))

    def active(self) -> int:
        return int(self.tree.total)

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        G = j.numel()
        a = self.active()
        if step >= self.revision_step or a < G:
            return draw.positions(self.ctx.seed, step, j, self.ctx.n), None
        k = draw.positions(self.ctx.seed, step, j, a)  # distinct ranks among active items
        return self.tree.find(k), None

    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        if "correct" not in fb and not ("loss" in fb and self.loss_threshold is not None):
            raise ValueError(
                "ProgressiveDropout needs correct=..., or loss=... with loss_threshold"
            )

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        if "correct" in fb:
            done = fb["correct"] >= 0.5
        else:
            done = fb["loss"] < self.loss_threshold
        drop = idx[done]
        if drop.numel():
            self.tree.set(drop, torch.zeros_like(drop, dtype=torch.int32))

    def state_dict(self) -> dict[str, Any]:
        return {"active": self.tree.leaves().to(torch.uint8).cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        a = state["active"]
        if a.numel() != self.ctx.n:
            raise ValueError("ProgressiveDropout state: item count does not match the source")
        self.tree = SumTree(a.to(self.ctx.device, torch.int32))

    def stats(self, step: int) -> dict[str, Any]:
        a = self.active()
        revision = step >= self.revision_step
        m = self.ctx.n if revision or a == 0 else a
        return {
            "active": a,
            "active_fraction": a / self.ctx.n,
            "revision": revision,
            "entropy": math.log(max(m, 1)),
        }

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "revision_step": self.revision_step}
