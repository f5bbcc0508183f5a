"""Uniform: the baseline. Each batch is a stratified uniform draw over all N ids (one id per
block of N/G consecutive ids), independent across steps. Per-item state: 0 bytes."""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import draw
from .base import Strategy


class Uniform(Strategy):
    name = "uniform"
    any_batch = True
    bytes_per_item = 0

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        return draw.positions(self.ctx.seed, step, j, self.ctx.n), None

    def stats(self, step: int) -> dict[str, Any]:
        return {"entropy": math.log(self.ctx.n), "eligible": self.ctx.n}
