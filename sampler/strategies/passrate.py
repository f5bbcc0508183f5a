"""PassRateFilter: balanced online difficulty filtering for RL on prompts (Bae et al. 2025,
"Online Difficulty Filtering for Reasoning Oriented Reinforcement Learning", arXiv 2504.03380),
as a sampler strategy fed by the trainer's rewards.

A prompt's rollouts all pass (pass rate 1) or all fail (pass rate 0): its group-relative
advantages are all zero and it gives no policy gradient. The paper keeps, in each batch, the
prompts whose pass rate is strictly between the bounds (balanced filtering: 0 < p < 1). Here
the pass rate a prompt had the last time it was served (its *recent* pass rate) decides
whether it is served again:

    p_i      = (1 / m_i) sum_k [value_ik >= threshold]   over the m_i feedback values (rollouts)
                                                         of item i in its latest update
    eligible = never served  or  low < p_i < high  or  filtered >= ttl updates ago

Each batch is a stratified uniform draw over the eligible items (through an int32 count tree,
as ``ProgressiveDropout``: O(G K log_K N)). With ``ttl`` set, an item filtered at update t is
eligible again from update t + ttl on (the policy moves: a prompt it could not solve may become
learnable, a solved one may be forgotten); ``ttl=None`` filters for good. When fewer than G
items are eligible, the step serves uniformly over all items (their feedback refreshes the pass
rates). Feedback: ``update(ids, reward=...)`` (or ``correct=``), one value per rollout, the
prompt's id repeated for each of its rollouts; a rollout passes when its value is >= ``threshold``
(default 0.5: exact-match rewards in {0, 1}).

Re-admission uses a FIFO of (item, update at which it is eligible again) appended in update
order, so its expiry times are non-decreasing: each update pops a prefix, O(popped) work, and
an entry is applied only if it is the item's latest filter (``until`` matches).

Pass counts are integers (exact sums on every device). Per-item state: pass rate float32 (-1:
never served) 4 B + re-admission update int32 4 B + int32 tree leaves and int64 sums 4.3 B:
about 12.3 B (``bytes_per_item`` = 13); plus the FIFO (at most the items filtered during the
last ``ttl`` updates).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import draw
from ..sumtree import SumTree
from .base import Context, Feedback, Strategy

_STATE = ("rate", "until", "eligible", "queue_item", "queue_until", "t")


class PassRateFilter(Strategy):
    name = "passrate"
    bytes_per_item = 13
    adaptive = True  # feedback changes which items are eligible

    def __init__(
        self,
        signal: str = "reward",
        low: float = 0.0,
        high: float = 1.0,
        threshold: float = 0.5,
        ttl: int | None = None,
    ) -> None:
        if signal not in ("reward", "correct"):
            raise ValueError(f"PassRateFilter: signal must be reward or correct, got {signal!r}")
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high <= 1):
            raise ValueError(f"PassRateFilter: need 0 <= low < high <= 1, got {low!r}, {high!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"PassRateFilter: threshold must be finite, got {threshold!r}")
        if ttl is not None and (isinstance(ttl, bool) or int(ttl) != ttl or ttl < 1):
            raise ValueError(f"PassRateFilter: ttl must be None or an integer >= 1, got {ttl!r}")
        self.signal, self.low, self.high = signal, float(low), float(high)
        self.threshold = float(threshold)
        self.ttl = None if ttl is None else int(ttl)

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        dev = ctx.device
        self.rate = torch.full((ctx.n,), -1.0, dtype=torch.float32, device=dev)
        self.until = torch.full((ctx.n,), -1, dtype=torch.int32, device=dev)
        self.tree = SumTree(torch.ones(ctx.n, dtype=torch.int32, device=dev))
        self.queue_item = torch.zeros(0, dtype=torch.int64, device=dev)
        self.queue_until = torch.zeros(0, dtype=torch.int64, device=dev)
        self.t = 0

    def eligible_count(self) -> int:
        return int(self.tree.total)

    # -- draw ------------------------------------------------------------------------------
    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        a = self.eligible_count()
        if a < j.numel():
            return draw.positions(self.ctx.seed, step, j, self.ctx.n), None
        k = draw.positions(self.ctx.seed, step, j, a)  # distinct ranks among eligible items
        return self.tree.find(k), None

    # -- feedback --------------------------------------------------------------------------
    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        if self.signal not in fb:
            raise ValueError(f"PassRateFilter(signal={self.signal!r}) needs {self.signal}=...")

    def pass_rates(self, idx: torch.Tensor, fb: Feedback) -> tuple[torch.Tensor, torch.Tensor]:
        """(distinct items, their pass rate in this update) from per-rollout values."""
        ok = (fb[self.signal] >= self.threshold).to(torch.int64)
        items, inv = torch.unique(idx, return_inverse=True)
        n = torch.zeros(items.numel(), dtype=torch.int64, device=idx.device)
        hits = torch.zeros_like(n)
        n.index_add_(0, inv, torch.ones_like(ok))
        hits.index_add_(0, inv, ok)  # integer sums: exact in any order
        return items, hits.to(torch.float64) / n.to(torch.float64)

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        if idx.numel() == 0:
            return
        items, p = self.pass_rates(idx, fb)
        keep = (p > self.low) & (p < self.high)
        self.rate[items] = p.to(torch.float32)
        self.tree.set(items, keep.to(torch.int32), unique=True)
        self.t += 1
        out = items[~keep]
        self.until[items] = -1
        if self.ttl is not None and out.numel():
            due = self.t + self.ttl
            self.until[out] = due
            self.queue_item = torch.cat([self.queue_item, out])
            self.queue_until = torch.cat([self.queue_until, torch.full_like(out, due)])
        self._readmit()

    def _readmit(self) -> None:
        """Pop the FIFO entries due by now; re-admit the items they still filter."""
        q = self.queue_until
        m = int((q <= self.t).sum()) if q.numel() else 0  # a prefix: q is non-decreasing
        if m == 0:
            return
        items, due = self.queue_item[:m], q[:m]
        self.queue_item, self.queue_until = self.queue_item[m:], q[m:]
        live = items[self.until[items].to(torch.int64) == due]  # each item at most once
        if live.numel():
            self.until[live] = -1
            self.tree.set(live, torch.ones_like(live, dtype=torch.int32), unique=True)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate.cpu().clone(),
            "until": self.until.cpu().clone(),
            "eligible": self.tree.leaves().to(torch.uint8).cpu().clone(),
            "queue_item": self.queue_item.cpu().clone(),
            "queue_until": self.queue_until.cpu().clone(),
            "t": torch.tensor(self.t, dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n, dev = self.ctx.n, self.ctx.device
        for k in _STATE:
            if not isinstance(state.get(k), torch.Tensor):
                raise ValueError(f"PassRateFilter state: {k} must be a tensor")
        if any(state[k].numel() != n for k in ("rate", "until", "eligible")):
            raise ValueError("PassRateFilter state: item count does not match the source")
        qi, qu = state["queue_item"].reshape(-1), state["queue_until"].reshape(-1)
        if qi.numel() != qu.numel() or state["t"].numel() != 1:
            raise ValueError("PassRateFilter state: malformed re-admission queue")
        if qi.numel() and (int(qi.min()) < 0 or int(qi.max()) >= n):
            raise ValueError("PassRateFilter state: queued ids out of range")
        self.rate = state["rate"].to(dev, torch.float32).clone()
        self.until = state["until"].to(dev, torch.int32).clone()
        self.tree = SumTree(state["eligible"].to(dev, torch.int32))
        self.queue_item = qi.to(dev, torch.int64).clone()
        self.queue_until = qu.to(dev, torch.int64).clone()
        self.t = int(state["t"])

    def stats(self, step: int) -> dict[str, Any]:
        """Eligible items, and the served ones by their recent pass rate (O(N), for logs)."""
        a = self.eligible_count()
        r = self.rate.cpu()
        seen = r >= 0
        off = self.tree.leaves().cpu() == 0
        return {
            "eligible": a,
            "eligible_fraction": a / self.ctx.n,
            "unseen": int((~seen).sum()),
            "filtered_low": int((off & seen & (r <= self.low)).sum()),
            "filtered_high": int((off & seen & (r >= self.high)).sum()),
            "queued": int(self.queue_item.numel()),
            "entropy": math.log(a if a >= (self.ctx.batch or 1) else self.ctx.n),
        }

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "signal": self.signal,
            "low": self.low,
            "high": self.high,
            "threshold": self.threshold,
            "ttl": self.ttl,
        }
