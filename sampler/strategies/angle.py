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
``ndtri``) over the S servable ranks: O(G), no renormalisation over N (GAIN-RL's
np.random.choice(p=) is O(N) per step); colliding ranks move to the next free rank so a batch is
distinct (S < G: every servable rank floor(G / S) or ceil(G / S) times). mu is clamped to
[0, S - 1] for the draw. The G ranks are computed on the host in float64 (ndtr / ndtri may
differ in the last ulp between CPU and CUDA math libraries), then the ids are gathered on the
device. NaN scores: ranked after every scored record (``nan="last"``, the default; GAIN-RL's
argsort put them first) or never served (``nan="exclude"``), as in Curriculum.
Per-item state: the rank order, int32 (4 B).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import draw
from .base import Context, Feedback, Strategy, check_nan_rule, rank_order, scored_count


class AngleWindow(Strategy):
    name = "angle"
    any_batch = True
    bytes_per_item = 4
    adaptive = True

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
        nan: str = "last",
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
        self.nan = check_nan_rule(nan, "AngleWindow")

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        col = ctx.require(self.score, "AngleWindow")
        self.order = rank_order(col, ctx.device, True)  # most concentrated first, NaN last
        self.servable = ctx.n if self.nan == "last" else scored_count(col)
        del col
        ctx.release(self.score)
        if self.servable == 0:
            raise ValueError(f"AngleWindow: no record has a {self.score!r} value, nan='exclude'")

    def ranks(self, step: int, G: int) -> torch.Tensor:
        """The G distinct ranks of the batch at ``step`` (host, int64, sorted)."""
        S = self.servable
        j = torch.arange(G, dtype=torch.int64)
        if S < G:  # fewer servable records than the batch: each floor/ceil(G / S) times
            return (j * S) // G
        mu = min(max(self.mu, 0.0), S - 1.0)
        lo = float(torch.special.ndtr(torch.tensor((0.0 - mu) / self.sigma, dtype=torch.float64)))
        hi = float(torch.special.ndtr(torch.tensor((S - mu) / self.sigma, dtype=torch.float64)))
        u = lo + draw.strat_uniform(self.ctx.seed, step, j) * (hi - lo)
        x = mu + self.sigma * torch.special.ndtri(u.clamp(1e-300, 1 - 1e-16))
        r = x.floor().clamp_(0, S - 1).to(torch.int64)
        return draw.make_distinct(r, S, j)

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        r = self.ranks(step, j.numel()).to(j.device)
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
        return {"name": self.name, "score": self.score, "sigma": self.sigma, "nan": self.nan}
