"""UCB over groups (DUMP, Wang et al. 2025, arXiv 2504.09710): arms are groups (clusters,
sources, buckets), items inside a group are served uniformly, without repeats.

    mu_j    = mean of the last W rewards of group j (0 before any feedback)
    score_j = mu_j + c sqrt(2 ln(N + 1) / (n_j + 1)),   N = max(1, sum_j n_j)
    p_j     = softmax(score / tau)_j                    (the target group shares)

Defaults W = 300, c = 1.0, tau = 0.1 (DUMP). The reward kind is explicit:
``abs_advantage`` (|advantage|, DUMP's "expected absolute advantage"), ``reward``, ``loss``, or
``loss_decrease`` (group EMA of loss before this update minus the loss: learning progress).

Draw and the device split of the state: ``sampler.strategies.groups`` (shared with EXP3).
Window sums are updated by segment sums of the (new - old) window values over the group-sorted
feedback (``np.add.reduceat``: sequential, fixed order, no atomics); the loss_decrease group
means are segment sums too.

Per-item state: the group layer's (``sampler.strategies.groups``: 6 B, 8 B above 32768
groups). Per-group state (host): W float32 window + a few counters
(about 4 W + 40 B per group).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .base import Context, Feedback
from .groups import GroupStrategy

_KINDS = {"abs_advantage": "advantage", "reward": "reward", "loss": "loss", "loss_decrease": "loss"}
_STATE = ("buf", "ptr", "fill", "count", "ema_loss", "ema_seen", "wsum")
_F32_MAX = float(np.finfo(np.float32).max)


class UCB(GroupStrategy):
    name = "ucb"

    def __init__(
        self,
        group: str = "cluster",
        c: float = 1.0,
        tau: float = 0.1,
        window: int = 300,
        reward: str = "abs_advantage",
        ema: float = 0.9,
    ) -> None:
        if reward not in _KINDS:
            raise ValueError(f"UCB: reward must be one of {sorted(_KINDS)}, got {reward!r}")
        if not (math.isfinite(c) and c >= 0):
            raise ValueError(f"UCB: c must be >= 0, got {c!r}")
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"UCB: tau must be > 0, got {tau!r}")
        if int(window) != window or window < 1:
            raise ValueError(f"UCB: window must be an integer >= 1, got {window!r}")
        if not (0 <= ema < 1):
            raise ValueError(f"UCB: ema must be in [0, 1), got {ema!r}")
        self.group, self.c, self.tau, self.window = group, float(c), float(tau), int(window)
        self.reward, self.ema = reward, float(ema)

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        K = self.K
        W = self.window
        self.buf = torch.zeros(K, W, dtype=torch.float32)
        self.ptr = torch.zeros(K, dtype=torch.int64)
        self.fill = torch.zeros(K, dtype=torch.int64)
        self.count = torch.zeros(K, dtype=torch.int64)
        self.ema_loss = torch.zeros(K, dtype=torch.float64)
        self.ema_seen = torch.zeros(K, dtype=torch.bool)
        self.wsum = torch.zeros(K, dtype=torch.float64)  # wsum[g] = sum of buf[g]
        self._refresh()

    # -- probabilities -------------------------------------------------------------------
    def _refresh(self) -> None:
        score = self._score()
        z = (score - score.max()) / self.tau
        z = np.maximum(z, -1e300)  # finite even when tau -> 0 and a reward spike dominates
        p = torch.softmax(torch.from_numpy(z), 0)
        # swapped in whole: a draw never sees a half-updated state
        self.probs, self.score = p, torch.from_numpy(score)
        self._set_logits(z)

    def _score(self) -> np.ndarray:
        """score_j = mu_j + c sqrt(2 ln(N + 1) / (n_j + 1)) in float64 on the host (the bonus
        keeps its float32 arithmetic: count + 1 as float32, reciprocal, multiply, sqrt)."""
        cnt = self.count.numpy()
        mu = self.wsum.numpy() / np.maximum(self.fill.numpy(), 1)
        total = max(1, int(cnt.sum()))
        x = cnt.astype(np.float32)
        x += np.float32(1)
        r = np.reciprocal(x)
        r *= np.float32(2.0 * math.log(total + 1))
        bonus = np.sqrt(r)
        bonus *= np.float32(self.c)
        return mu + bonus

    # -- feedback --------------------------------------------------------------------------
    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        need = _KINDS[self.reward]
        if need not in fb:
            raise ValueError(f"UCB(reward={self.reward!r}) needs update(..., {need}=...)")

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        if idx.numel() == 0:
            return
        sg = self.segments(idx)
        g32, order, gs, first, cnt = sg.g32, sg.order, sg.gs, sg.first, sg.cnt
        heads, ug, c = sg.heads, sg.ug, sg.c
        if self.reward == "abs_advantage":
            v = np.abs(fb["advantage"].cpu().numpy())
        elif self.reward in ("reward", "loss"):
            v = fb[self.reward].cpu().numpy()
        else:
            loss = fb["loss"].cpu().numpy()
            ema_loss, ema_seen = self.ema_loss.numpy(), self.ema_seen.numpy()
            g = g32.astype(np.int64)
            v = np.where(ema_seen[g], ema_loss[g], loss) - loss
            # segment sums over the group-sorted losses (sequential per segment, no atomics)
            gmean = np.add.reduceat(loss[order], heads) / c
            old = ema_loss[ug]
            ema_loss[ug] = np.where(ema_seen[ug], self.ema * old + (1 - self.ema) * gmean, gmean)
            ema_seen[ug] = True
        vs = np.clip(v[order], -_F32_MAX, _F32_MAX).astype(np.float32)
        W = self.window
        buf, ptr, fill = self.buf.numpy(), self.ptr.numpy(), self.fill.numpy()
        r = np.arange(gs.size) - first
        keep = r >= cnt - W  # only the last W values of a group survive
        if not keep.all():
            gs, r, vs = gs[keep], r[keep], vs[keep]
        pos = (ptr[gs] + r) % W  # distinct slots per group (at most W values kept)
        delta = vs.astype(np.float64) - buf[gs, pos].astype(np.float64)
        buf[gs, pos] = vs
        ptr[ug] = (ptr[ug] + c) % W
        fill[ug] = np.minimum(fill[ug] + c, W)
        self.count.numpy()[ug] += c
        # window sums: a segment sum of the deltas over the group-sorted values, sequential
        # in a fixed order on the host (no atomics, the same bits for every device)
        kh = np.flatnonzero(np.diff(gs, prepend=-1))
        self.wsum.numpy()[gs[kh]] += np.add.reduceat(delta, kh)
        self._refresh()

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).clone() for k in _STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        K, W = self.K, self.window
        if tuple(state["buf"].shape) != (K, W):
            raise ValueError("UCB state: window buffer shape does not match (groups, window)")
        new = {}
        for k in _STATE:
            ref = getattr(self, k)
            t = state[k]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(ref.shape):
                raise ValueError(f"UCB state: {k} has the wrong shape for {K} groups")
            new[k] = t.detach().to("cpu", ref.dtype).clone()
        if not (
            bool(((new["ptr"] >= 0) & (new["ptr"] < W)).all())
            and bool(((new["fill"] >= 0) & (new["fill"] <= W)).all())
            and bool((new["count"] >= 0).all())
        ):
            raise ValueError("UCB state: window pointers or counts out of range")
        for k, t in new.items():
            setattr(self, k, t)
        self._refresh()

    def stats(self, step: int) -> dict[str, Any]:
        return {
            **self.group_stats(self.probs),
            "group_counts": self.count.clone(),
            "group_scores": self.score.clone(),
        }

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "c": self.c,
            "tau": self.tau,
            "window": self.window,
            "reward": self.reward,
        }
