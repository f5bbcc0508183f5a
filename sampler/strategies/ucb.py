"""UCB over groups (DUMP, Wang et al. 2025, arXiv 2504.09710): arms are groups (clusters,
sources, buckets), items inside a group are served uniformly, without repeats.

    mu_j    = mean of the last W rewards of group j (0 before any feedback)
    score_j = mu_j + c sqrt(2 ln(N + 1) / (n_j + 1)),   N = max(1, sum_j n_j)
    p_j     = softmax(score / tau)_j                    (the target group shares)

Defaults W = 300, c = 1.0, tau = 0.1 (DUMP). The reward kind is explicit:
``abs_advantage`` (|advantage|, DUMP's "expected absolute advantage"), ``reward``, ``loss``, or
``loss_decrease`` (group EMA of loss before this update minus the loss: learning progress).

Draw (no id twice in a batch, whatever the group sizes): the G slots are allocated to groups by
``sampler.alloc``: a_j = min(s_j, lam p_j) with sum a_j = G (a group smaller than its share
serves all its items and gives its remainder to the others in proportion to their
probabilities: the allocation closest to the softmax in KL), rounded systematically to counts
c_j in {floor(a_j), ceil(a_j)}, c_j <= s_j. Inside group j the c_j slots are a stratified draw
of distinct positions in its contiguous block of the group-sorted order: slot r takes a uniform
position in [r s_j // c_j, (r + 1) s_j // c_j). O(G log K) per batch; the allocation is
recomputed (O(K log K) only when a cap binds) once per state change.

Devices: the group layer (K groups: windows, counts, scores, probabilities, allocation, slot
positions) lives on the host in numpy float64 on every device, so its bits do not depend on the
device's math library or reduction order; only the per-item tables (order, item -> group) live
on the sampler's device, where the batch ids are gathered and feedback ids are mapped to groups.
Window sums are updated by segment sums of the (new - old) window values over the group-sorted
feedback (``np.add.reduceat``: sequential, fixed order, no atomics); the loss_decrease group
means are segment sums too.

Per-item state: order int32 (4 B) + item -> group (int16 for up to 32768 groups: 2 B; else
int32: 4 B) = 6 B (8 B). Both are built without an N-sized int64 temporary (chunked bincount
and remap; a counting sort straight into the int32 order), and the group column read from the
source is released once they exist. Per-group state (host): W float32 window + a few counters
(about 4 W + 40 B per group).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import alloc, draw, rng
from ..sort import argsort_labels
from .base import Context, Feedback, Strategy, group_ids

_KINDS = {"abs_advantage": "advantage", "reward": "reward", "loss": "loss", "loss_decrease": "loss"}
_STATE = ("buf", "ptr", "fill", "count", "ema_loss", "ema_seen", "wsum")
_F32_MAX = float(np.finfo(np.float32).max)


class UCB(Strategy):
    name = "ucb"
    bytes_per_item = 6
    group_based = True
    adaptive = True

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
        del col
        ctx.release(self.group)  # the source's copy of the column is no longer needed
        dev = ctx.device
        self.labels = torch.as_tensor(labels)
        self.K = K = int(labels.size)
        self.item_group = torch.from_numpy(inverse).to(dev)
        self.bytes_per_item = 4 + inverse.itemsize
        # group-sorted order (stable: ids ascending inside a group): one counting sort
        bits = max(1, (K - 1).bit_length())
        self.order = torch.from_numpy(argsort_labels(inverse, bits)).to(dev)
        del inverse
        self.sizes = np.asarray(counts, dtype=np.int64)
        self.offsets = np.cumsum(self.sizes) - self.sizes
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
        self.probs, self.score, self.z, self._alloc = p, torch.from_numpy(score), z, {}

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

    def allocation(self, G: int) -> np.ndarray:
        """Expected slots per group in a batch of G: a_j = min(s_j, lam p_j), sum G."""
        if G not in self._alloc:
            self._alloc[G] = alloc.allocate(self.z, self.sizes, G)
        return self._alloc[G]

    # -- draw ------------------------------------------------------------------------------
    def slots(self, step: int, G: int) -> np.ndarray:
        """Positions (in the group-sorted order) of the G slots at ``step``: host int64."""
        seed = self.ctx.seed
        A = alloc.cumulative(self.allocation(G), G)
        U = float(rng.uniform_np(rng.bits_np(seed, rng.DRAW, step, np.zeros(1, np.int64)))[0])
        g = alloc.slot_groups(A, self.sizes, G, U)  # sorted, at most s_j slots per group
        j = np.arange(G, dtype=np.int64)
        first, cnt = draw.run_bounds_np(g)
        r = j - first
        size = self.sizes[g]
        start = (r * size) // cnt
        width = ((r + 1) * size) // cnt - start  # >= 1 since cnt <= size: distinct positions
        pos = start + ((rng.bits_np(seed, rng.DRAW + 16, step, j) * width) >> 32)
        return pos + self.offsets[g]

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        pos = torch.from_numpy(self.slots(step, j.numel())).to(j.device)
        return draw.gather(self.order, pos), None

    # -- feedback --------------------------------------------------------------------------
    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        need = _KINDS[self.reward]
        if need not in fb:
            raise ValueError(f"UCB(reward={self.reward!r}) needs update(..., {need}=...)")

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        if idx.numel() == 0:
            return
        g32 = draw.gather(self.item_group, idx).cpu().numpy()
        # stable sort by group; on uint16 keys numpy uses a radix sort
        order = np.argsort(g32.astype(np.uint16) if self.K <= 65536 else g32, kind="stable")
        gs = g32.astype(np.int64)[order]
        first, cnt = draw.run_bounds_np(gs)
        heads = np.flatnonzero(first == np.arange(gs.size))
        ug, c = gs[heads], cnt[heads]
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
        p = self.probs
        ent = float(-(p * torch.log(p.clamp(min=1e-300))).sum())
        out = {
            "group_labels": self.labels.clone(),
            "group_probabilities": p.clone(),
            "group_target_share": p.clone(),
            "group_counts": self.count.clone(),
            "group_scores": self.score.clone(),
            "group_sizes": torch.from_numpy(self.sizes.copy()),
            "entropy": ent,
        }
        G = self.ctx.batch
        if G:
            out["group_served_share"] = torch.from_numpy(self.allocation(G) / G)
        return out

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "c": self.c,
            "tau": self.tau,
            "window": self.window,
            "reward": self.reward,
        }
