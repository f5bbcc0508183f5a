"""UCB over groups (DUMP, Wang et al. 2025, arXiv 2504.09710): arms are groups (clusters,
sources, buckets), items inside a group are served uniformly.

    mu_j    = mean of the last W rewards of group j (0 before any feedback)
    score_j = mu_j + c sqrt(2 ln(N + 1) / (n_j + 1)),   N = max(1, sum_j n_j)
    p_j     = softmax(score / tau)_j

Defaults W = 300, c = 1.0, tau = 0.1 (DUMP). The reward kind is explicit:
``abs_advantage`` (|advantage|, DUMP's "expected absolute advantage"), ``reward``, ``loss``, or
``loss_decrease`` (group EMA of loss before this update minus the loss: learning progress).

Draw: group counts by stratified inverse-CDF over the K group probabilities (O(G log K)), then
for each group a stratified draw of distinct positions inside its contiguous block of the
group-sorted order (O(G log G)). Distinct within a batch when a group holds at least as many items
as it is allocated. Update: O(u log u + touched_groups * W); probabilities are recomputed, O(K),
once per update and swapped in whole (draws never see a half-updated state).
On CPU, draw / update / score run in numpy on views of the same tensors (same values; torch's
per-op overhead dominated at these sizes).

Per-item state: order int32 (4 B) + item -> group int32 (4 B) = 8 B. Per-group state: W float32
window + a few counters (about 4 W + 40 B per group).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import draw, rng
from .base import Context, Feedback, Strategy, group_ids, np_index_dtype, radix_argsort

_KINDS = {"abs_advantage": "advantage", "reward": "reward", "loss": "loss", "loss_decrease": "loss"}


class UCB(Strategy):
    name = "ucb"
    bytes_per_item = 8
    group_based = True

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
        col = ctx.require(self.group, "UCB")
        if col.dtype.kind == "f" and not np.isfinite(col).all():
            raise ValueError(f"UCB: group column {self.group!r} has NaN or inf values")
        labels, inverse, counts = group_ids(col)
        dev = ctx.device
        self.labels = torch.as_tensor(labels)
        self.K = int(labels.size)
        self.item_group = torch.from_numpy(inverse.astype(np.int32, copy=False)).to(dev)
        order = radix_argsort(inverse.view(np.uint32)).astype(np_index_dtype(ctx.n), copy=False)
        self.order = torch.from_numpy(order).to(dev)
        self.sizes = torch.as_tensor(counts, dtype=torch.int64).to(dev)
        self.offsets = torch.cumsum(self.sizes, 0) - self.sizes
        K, W = self.K, self.window
        self.buf = torch.zeros(K, W, dtype=torch.float32, device=dev)
        self.ptr = torch.zeros(K, dtype=torch.int64, device=dev)
        self.fill = torch.zeros(K, dtype=torch.int64, device=dev)
        self.count = torch.zeros(K, dtype=torch.int64, device=dev)
        self.ema_loss = torch.zeros(K, dtype=torch.float64, device=dev)
        self.ema_seen = torch.zeros(K, dtype=torch.bool, device=dev)
        self.wsum = torch.zeros(K, dtype=torch.float64, device=dev)  # running window sums
        self._refresh()

    # -- probabilities -------------------------------------------------------------------
    def _refresh(self) -> None:
        if draw.on_numpy(self.wsum):
            score = self._score_np()
        else:
            mu = self.wsum / self.fill.clamp(min=1)
            total = max(1, int(self.count.sum()))
            score = mu + self.c * torch.sqrt(2.0 * math.log(total + 1) / (self.count + 1.0))
        p = torch.softmax(score / self.tau, 0)
        cdf = torch.cumsum(p, 0)
        cdf[-1] = 1.0
        self.probs, self.cdf, self.score = p, cdf, score  # swapped in whole

    def _score_np(self) -> torch.Tensor:
        """The CPU score in numpy with torch's exact float32 bonus arithmetic (count + 1.0 is
        float32; scalar / tensor is reciprocal then multiply; torch's float32 sqrt)."""
        cnt = self.count.numpy()
        mu = self.wsum.numpy() / np.maximum(self.fill.numpy(), 1)
        total = max(1, int(cnt.sum()))
        x = cnt.astype(np.float32)
        x += np.float32(1)
        r = np.reciprocal(x)
        r *= np.float32(2.0 * math.log(total + 1))
        bonus = torch.sqrt(torch.from_numpy(r)).numpy()
        bonus *= np.float32(self.c)
        return torch.from_numpy(mu + bonus)

    # -- draw ------------------------------------------------------------------------------
    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        if draw.on_numpy(j):
            return self._draw_np(step, j.numpy()), None
        u = draw.strat_uniform(self.ctx.seed, step, j)
        g = draw.searchsorted(self.cdf, u, right=True).clamp_(max=self.K - 1)  # sorted
        first, cnt = draw.run_bounds(g, j)
        r = j - first
        size = self.sizes[g]
        start = (r * size) // cnt
        width = ((r + 1) * size) // cnt - start
        over = cnt > size  # group smaller than its allocation: cycle through it
        start = torch.where(over, r % size, start)
        width = torch.where(over, torch.ones_like(width), width)
        pos = start + rng.below(rng.bits(self.ctx.seed, rng.DRAW + 16, step, j), width)
        return draw.gather(self.order, self.offsets[g] + pos), None

    def _draw_np(self, step: int, j: np.ndarray) -> torch.Tensor:
        """``draw`` on CPU in numpy, same values (a few dozen ops on 1024 items: torch's per-op
        dispatch overhead dominated the CPU time)."""
        G, seed = j.size, self.ctx.seed
        u = (j.astype(np.float64) + rng.uniform_np(rng.bits_np(seed, rng.DRAW, step, j))) / G
        g = np.searchsorted(self.cdf.numpy(), u, side="right")
        np.minimum(g, self.K - 1, out=g)
        first, cnt = draw.run_bounds_np(g)
        r = j - first
        size = self.sizes.numpy()[g]
        rs = r * size
        start = rs // cnt
        width = (rs + size) // cnt - start
        over = cnt > size  # group smaller than its allocation: cycle through it
        if over.any():
            start = np.where(over, r % size, start)
            width = np.where(over, 1, width)
        pos = start + ((rng.bits_np(seed, rng.DRAW + 16, step, j) * width) >> 32)
        pos += self.offsets.numpy()[g]
        return torch.from_numpy(self.order.numpy()[pos].astype(np.int64, copy=False))

    # -- feedback --------------------------------------------------------------------------
    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        need = _KINDS[self.reward]
        if need not in fb:
            raise ValueError(f"UCB(reward={self.reward!r}) needs update(..., {need}=...)")

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        if idx.numel() == 0:
            return
        if draw.on_numpy(idx):
            self._update_np(idx.numpy(), fb)
            self._refresh()
            return
        g = self.item_group[idx].long()
        order = torch.argsort(g, stable=True)
        gs = g[order]
        ug, c = torch.unique_consecutive(gs, return_counts=True)
        if self.reward == "abs_advantage":
            v = fb["advantage"].abs()
        elif self.reward in ("reward", "loss"):
            v = fb[self.reward]
        else:
            loss = fb["loss"]
            prev = torch.where(self.ema_seen[g], self.ema_loss[g], loss)
            v = prev - loss
            gsum = torch.zeros(ug.numel(), dtype=torch.float64, device=g.device)
            gsum.index_add_(
                0,
                torch.repeat_interleave(torch.arange(ug.numel(), device=g.device), c),
                loss[order],
            )
            gmean = gsum / c
            old = self.ema_loss[ug]
            self.ema_loss[ug] = torch.where(
                self.ema_seen[ug], self.ema * old + (1 - self.ema) * gmean, gmean
            )
            self.ema_seen[ug] = True
        vs = v[order].to(torch.float32)
        W = self.window
        ar = torch.arange(gs.numel(), device=gs.device)
        first, cnt = draw.run_bounds(gs, ar)
        r = ar - first
        keep = r >= cnt - W  # only the last W values of a group survive
        pos = (self.ptr[gs] + r) % W
        gk, pk, vk = gs[keep], pos[keep], vs[keep]
        old = self.buf[gk, pk]  # invariant: wsum[g] == buf[g].sum() (empty slots are 0)
        self.wsum.index_add_(0, gk, vk.to(torch.float64) - old.to(torch.float64))
        self.buf[gk, pk] = vk
        self.ptr[ug] = (self.ptr[ug] + c) % W
        self.fill[ug] = (self.fill[ug] + c).clamp(max=W)
        self.count[ug] += c
        self._refresh()

    def _update_np(self, idx: np.ndarray, fb: Feedback) -> None:
        """``update`` on CPU in numpy on views of the state tensors, same values."""
        g32 = self.item_group.numpy()[idx]
        # stable sort by group; on uint16 keys numpy uses a radix sort (same permutation)
        order = np.argsort(g32.astype(np.uint16) if self.K <= 65536 else g32, kind="stable")
        g = g32.astype(np.int64)
        gs = g[order]
        first, cnt = draw.run_bounds_np(gs)
        heads = np.flatnonzero(first == np.arange(gs.size))
        ug, c = gs[heads], cnt[heads]
        if self.reward == "abs_advantage":
            v = np.abs(fb["advantage"].numpy())
        elif self.reward in ("reward", "loss"):
            v = fb[self.reward].numpy()
        else:
            loss = fb["loss"].numpy()
            ema_loss, ema_seen = self.ema_loss.numpy(), self.ema_seen.numpy()
            v = np.where(ema_seen[g], ema_loss[g], loss) - loss
            gsum = np.zeros(ug.size, dtype=np.float64)
            np.add.at(gsum, np.repeat(np.arange(ug.size), c), loss[order])
            gmean = gsum / c
            old = ema_loss[ug]
            ema_loss[ug] = np.where(ema_seen[ug], self.ema * old + (1 - self.ema) * gmean, gmean)
            ema_seen[ug] = True
        vs = v[order].astype(np.float32)
        W = self.window
        buf, ptr, fill = self.buf.numpy(), self.ptr.numpy(), self.fill.numpy()
        r = np.arange(gs.size) - first
        keep = r >= cnt - W  # only the last W values of a group survive
        if not keep.all():
            gs, r, vs = gs[keep], r[keep], vs[keep]
        pos = (ptr[gs] + r) % W
        old = buf[gs, pos]  # invariant: wsum[g] == buf[g].sum() (empty slots are 0)
        np.add.at(self.wsum.numpy(), gs, vs.astype(np.float64) - old.astype(np.float64))
        buf[gs, pos] = vs
        ptr[ug] = (ptr[ug] + c) % W
        fill[ug] = np.minimum(fill[ug] + c, W)
        self.count.numpy()[ug] += c

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "buf": self.buf.cpu(),
            "ptr": self.ptr.cpu(),
            "fill": self.fill.cpu(),
            "count": self.count.cpu(),
            "ema_loss": self.ema_loss.cpu(),
            "ema_seen": self.ema_seen.cpu(),
            "wsum": self.wsum.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["buf"].shape) != (self.K, self.window):
            raise ValueError("UCB state: window buffer shape does not match (groups, window)")
        dev = self.ctx.device
        for k in ("buf", "ptr", "fill", "count", "ema_loss", "ema_seen", "wsum"):
            setattr(self, k, state[k].to(dev).clone())
        self._refresh()

    def stats(self, step: int) -> dict[str, Any]:
        p = self.probs
        ent = float(-(p * torch.log(p.clamp(min=1e-300))).sum())
        return {
            "group_labels": self.labels.cpu(),
            "group_probabilities": p.cpu(),
            "group_counts": self.count.cpu(),
            "group_scores": self.score.cpu(),
            "entropy": ent,
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
