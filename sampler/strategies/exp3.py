"""EXP3 over groups as in Online Data Mixing (ODM: Albalak, Pan, Raffel, Wang 2023, "Efficient
Online Data Mixing For Language Model Pre-Training", arXiv 2312.02406, Algorithm 1; EXP3: Auer,
Cesa-Bianchi, Freund, Schapire 2002). Arms are groups (domains, clusters); items inside a group
are served uniformly, without repeats (``sampler.strategies.groups``, shared with UCB).

After t updates (t = 0 before any feedback):

    eps_t   = min(1 / K, sqrt(ln K / (K t)))           (eps_0 = 1 / K)
    pi_t(j) = (1 - K eps_t) softmax(eps_{t-1} R_hat)_j + eps_t      (pi_0 uniform)

Each ``update`` is one bandit round. The feedback of a batch is turned into an importance-
weighted reward estimate per group, the batch form of EXP3's r / pi (an item of group j is in the
batch with probability pi(j) per slot): with F values in the update and S_j the sum of the
(scaled) rewards of group j's values,

    r_hat_j = S_j / (F pi_t(j))          (unbiased: E[r_hat_j] = mean reward of group j)

using the probabilities the batch was drawn with (those before this update), and

    R_hat_j <- R_hat_j + r_hat_j                         (``smoothing=None``: EXP3, cumulative;
                                                          ODM's released Exp3WeightUpdater)
    R_hat_j <- a R_hat_j + (1 - a) r_hat_j               (``smoothing=a``: ODM's smoothed
                                                          estimate)

for the groups present in the update (the others keep R_hat_j). The reward is ODM's by default:
the training loss, scaled by ``scale`` = 1/10 (ODM divides the loss by 10). Kinds: ``loss``,
``reward``, ``abs_advantage`` (|advantage|); pass a learnability signal as ``loss=`` (e.g.
``sampler.reducible_loss``) to reward learnable groups instead of high-loss ones (with the
plain loss, EXP3 prefers the groups with the highest loss: noise, when a corpus has it).

The exploration floor eps_t gives every group at least eps_t of the draws (in expectation):
K eps_t of the batch is uniform over groups; it decays as 1 / sqrt(t).

State: R_hat (K float64) and t; everything else is derived. Host numpy float64 on every device
(the same bits on CPU and CUDA). Per-item state: 8 B (the group layer's two int32 tables).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .base import Context, Feedback
from .groups import GroupStrategy

_KINDS = {"loss": "loss", "reward": "reward", "abs_advantage": "advantage"}


def exploration(t: int, K: int) -> float:
    """eps_t = min(1 / K, sqrt(ln K / (K t))), eps_0 = 1 / K (ODM's schedule)."""
    if t <= 0:
        return 1.0 / K
    return min(1.0 / K, math.sqrt(math.log(K) / (K * t)))


def exp3_probabilities(rhat: np.ndarray, t: int) -> np.ndarray:
    """pi_t = (1 - K eps_t) softmax(eps_{t-1} R_hat) + eps_t (float64, sums to 1)."""
    K = rhat.size
    eps, prev = exploration(t, K), exploration(t - 1, K)
    x = prev * rhat
    w = np.exp(x - x.max())
    return (1.0 - K * eps) * (w / w.sum()) + eps


class EXP3(GroupStrategy):
    name = "exp3"

    def __init__(
        self,
        group: str = "cluster",
        reward: str = "loss",
        scale: float = 0.1,
        smoothing: float | None = None,
    ) -> None:
        if reward not in _KINDS:
            raise ValueError(f"EXP3: reward must be one of {sorted(_KINDS)}, got {reward!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"EXP3: scale must be > 0, got {scale!r}")
        if smoothing is not None and not (0 <= smoothing < 1):
            raise ValueError(f"EXP3: smoothing must be None or in [0, 1), got {smoothing!r}")
        self.group, self.reward, self.scale = group, reward, float(scale)
        self.smoothing = None if smoothing is None else float(smoothing)

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        self.rhat = torch.zeros(self.K, dtype=torch.float64)
        self.t = torch.zeros((), dtype=torch.int64)
        self._refresh()

    def _refresh(self) -> None:
        p = exp3_probabilities(self.rhat.numpy(), int(self.t))
        # swapped in whole: a draw never sees a half-updated state
        self.probs = torch.from_numpy(p)
        self._set_logits(np.log(p))  # p >= eps_t > 0 for K >= 2; p = [1] for K = 1

    # -- feedback --------------------------------------------------------------------------
    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        need = _KINDS[self.reward]
        if need not in fb:
            raise ValueError(f"EXP3(reward={self.reward!r}) needs update(..., {need}=...)")

    def estimates(self, idx: torch.Tensor, fb: Feedback) -> tuple[np.ndarray, np.ndarray]:
        """(groups present, r_hat of each): the importance-weighted reward estimates of one
        update, r_hat_j = S_j / (F pi(j)), under the current probabilities."""
        sg = self.segments(idx)
        v = fb[_KINDS[self.reward]].cpu().numpy()
        if self.reward == "abs_advantage":
            v = np.abs(v)
        sums = np.add.reduceat(v[sg.order] * self.scale, sg.heads)
        return sg.ug, sums / (idx.numel() * self.probs.numpy()[sg.ug])

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        if idx.numel() == 0:
            return
        ug, rhat_b = self.estimates(idx, fb)
        rhat = self.rhat.numpy().copy()
        if self.smoothing is None:
            rhat[ug] += rhat_b
        else:
            a = self.smoothing
            rhat[ug] = a * rhat[ug] + (1 - a) * rhat_b
        if not np.isfinite(rhat).all():  # a reward of 1e308 / tiny pi: saturate, stay finite
            rhat = np.nan_to_num(rhat, posinf=np.finfo(np.float64).max / 4, neginf=-1e300)
        self.rhat = torch.from_numpy(rhat)
        self.t = self.t + 1
        self._refresh()

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rhat": self.rhat.clone(), "t": self.t.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rhat, t = state["rhat"], state["t"]
        if not isinstance(rhat, torch.Tensor) or tuple(rhat.shape) != (self.K,):
            raise ValueError(f"EXP3 state: rhat must have shape ({self.K},) (one per group)")
        if not isinstance(t, torch.Tensor) or t.numel() != 1 or int(t) < 0:
            raise ValueError("EXP3 state: t must be one integer >= 0")
        rhat = rhat.detach().to("cpu", torch.float64).clone()
        if not bool(torch.isfinite(rhat).all()):
            raise ValueError("EXP3 state: rhat has NaN or infinite values")
        self.rhat, self.t = rhat, t.detach().to("cpu", torch.int64).reshape(()).clone()
        self._refresh()

    def stats(self, step: int) -> dict[str, Any]:
        return {
            **self.group_stats(self.probs),
            "group_reward_estimates": self.rhat.clone(),
            "exploration": exploration(int(self.t), self.K),
        }

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "reward": self.reward,
            "scale": self.scale,
            "smoothing": self.smoothing,
        }
