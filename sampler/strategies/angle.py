"""AngleWindow (GAIN-RL, Wang et al. NeurIPS 2025, arXiv 2506.02281): items ranked by angle
concentration, most concentrated first (NaN scores last, fixing GAIN-RL's NaN-first argsort);
ranks are drawn from a Gaussian window over the rank axis

    p(rank i) ∝ exp(-((i - mu) / sigma)^2 / 2),  truncated to [0, N)

and the window moves forward as accuracy rises (GAIN-RL ``update_after_epoch``):

    acc   = mean reward (or correctness) of the feedback, scaled to [0, 1] by ``reward_scale``
    delta = clamp(n tanh(alpha (acc - beta)), adj_min, adj_max);  mu <- mu + delta

Defaults sigma = 1000, n = 500, alpha = 2, beta = 0.5, adj_min = 0, adj_max = 1000 (GAIN-RL).
GAIN-RL assumes rewards in {0, 2} (acc / 2); here ``reward_scale`` states the maximum reward.

Draw: exact truncated normal by inverse CDF over stratified uniforms (``torch.special.ndtr`` /
``ndtri``): O(G), no renormalisation over N (GAIN-RL's np.random.choice(p=) is O(N) per step);
colliding ranks move to the next free rank so a batch is distinct. mu is clamped to [0, N - 1]
for the draw. Per-item state: the rank order, int32 (4 B).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import draw
from .base import Context, Feedback, Strategy, rank_order


class AngleWindow(Strategy):
    name = "angle"
    bytes_per_item = 4

    def __init__(
        self,
        score: str = "angle_concentration",
        sigma: float = 1000.0,
        mu0: float = 0.0,
        n: float = 500.0,
        alpha: float = 2.0,
        beta: float = 0.5,
        adj_min: float = 0.0,
        adj_max: float = 1000.0,
        reward_scale: float = 1.0,
    ) -> None:
        for name, v in (("sigma", sigma), ("reward_scale", reward_scale)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"AngleWindow: {name} must be > 0, got {v!r}")
        for name, v in (("mu0", mu0), ("n", n), ("alpha", alpha), ("beta", beta)):
            if not math.isfinite(v):
                raise ValueError(f"AngleWindow: {name} must be finite, got {v!r}")
        if not (math.isfinite(adj_min) and math.isfinite(adj_max) and adj_min <= adj_max):
            raise ValueError("AngleWindow: need finite adj_min <= adj_max")
        self.score, self.sigma, self.mu = score, float(sigma), float(mu0)
        self.n, self.alpha, self.beta = float(n), float(alpha), float(beta)
        self.adj_min, self.adj_max, self.reward_scale = float(adj_min), float(adj_max), reward_scale

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        self.order = rank_order(ctx.require(self.score, "AngleWindow"), ctx.device, True)

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        N = self.ctx.n
        mu = min(max(self.mu, 0.0), N - 1.0)
        lo = float(torch.special.ndtr(torch.tensor((0.0 - mu) / self.sigma, dtype=torch.float64)))
        hi = float(torch.special.ndtr(torch.tensor((N - mu) / self.sigma, dtype=torch.float64)))
        u = lo + draw.strat_uniform(self.ctx.seed, step, j) * (hi - lo)
        x = mu + self.sigma * torch.special.ndtri(u.clamp(1e-300, 1 - 1e-16))
        r = x.floor().clamp_(0, N - 1).to(torch.int64)
        r = draw.make_distinct(r, N, j)
        return draw.gather(self.order, r), None

    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        if "reward" not in fb and "correct" not in fb:
            raise ValueError("AngleWindow needs update(..., reward=...) or correct=...")

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        v = fb["correct"] if "correct" in fb else fb["reward"] / self.reward_scale
        if v.numel() == 0:
            return
        acc = float(v.mean())
        delta = self.n * math.tanh(self.alpha * (acc - self.beta))
        self.mu += min(max(delta, self.adj_min), self.adj_max)

    def state_dict(self) -> dict[str, Any]:
        return {"mu": self.mu}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mu = float(state["mu"])

    def stats(self, step: int) -> dict[str, Any]:
        # differential entropy of the (untruncated) window, in nats over ranks
        return {
            "mu": self.mu,
            "sigma": self.sigma,
            "entropy": 0.5 * math.log(2 * math.pi * math.e * self.sigma**2),
        }

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "sigma": self.sigma}
