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

Group prior for unseen prompts (``group="level"``, or a cluster column): the filter learns a
prompt's pass rate only by serving it, so early in a run, while most prompts are unseen, it
serves as many zero-variance groups as uniform does. With a group column it keeps, per group g,
the counts of its prompts whose *first* rollout disagreed (D_g: pass rate in the band) or
agreed (A_g), and serves a never-seen prompt of g with the weight of its group's estimated share
of informative prompts under a Beta(1, 1) prior (the posterior mean):

    w_i = 1                                  seen and eligible (in band, or re-admitted by ttl)
    w_i = ((1 + D_g) / (2 + D_g + A_g))^a    never served, g = group(i); a = ``power``
    w_i = 0                                  filtered (until ttl)

``power`` a (default 1: the posterior mean itself) sharpens the prior, as PER's alpha does its
priorities: the draws are proportional to the weights, so with a = 1 a group whose prompts agree
3 times in 4 still has its unseen prompts drawn at a quarter of the rate of informative ones,
and over a long run most of them are served anyway; a > 1 holds them back further (at the cost
of exploration: a group held back is rolled out rarely, so its estimate moves slowly).

Only first rollouts count: they are the unbiased sample of a group's unseen prompts (a prompt
served again was informative last time, which would bias D_g up), and D_g + A_g is then the
number of seen prompts of g, so the state checks itself. The draw: the eligible items form
cells of equal weight, cell 0 = the seen eligible ones (s_0 items, w = 1) and one cell per
group of its unseen ones (s_g = size_g - D_g - A_g items, w_g); cell j gets a_j = min(s_j, lam
w_j s_j) of the G slots with sum a_j = G (``sampler.alloc``: each item's chance to be in the
batch is min(1, lam w_i), so a batch never holds an item twice), rounded systematically to
integer counts, and each cell's slots are a stratified draw of distinct ranks among its items
through an int32 count tree (cell 0: over item ids; the unseen cells: one tree over the
group-sorted order, group g's block holding its unseen items). The weights and the allocation
are K + 1 numbers computed on the host in float64 (the same bits on every device), once per
update; counts are integers. Without ``group`` the behaviour is the plain filter above (all
eligible items equally likely).

Pass counts are integers (exact sums on every device). Per-item state: pass rate float32 (-1:
never served) 4 B + re-admission update int32 4 B + int32 tree leaves and int64 sums 4.3 B:
about 12.3 B (``bytes_per_item`` = 13); plus the FIFO (at most the items filtered during the
last ``ttl`` updates). With ``group``: + the unseen tree 4.3 B, the group-sorted order int32
4 B, each item's position in it int32 4 B and item -> group int16 2 B (int32 above 32768
groups): about 26.6 B (``bytes_per_item`` = 27 or 29); per group two int64 counts (host).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import alloc, draw, rng
from ..sort import argsort_labels
from ..sumtree import SumTree
from .base import Context, Feedback, Strategy, group_ids

_STATE = ("rate", "until", "eligible", "queue_item", "queue_until", "t")
_GROUP_STATE = ("disagreed", "agreed")


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
        group: str | None = None,
        power: float = 1.0,
    ) -> None:
        if signal not in ("reward", "correct"):
            raise ValueError(f"PassRateFilter: signal must be reward or correct, got {signal!r}")
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high <= 1):
            raise ValueError(f"PassRateFilter: need 0 <= low < high <= 1, got {low!r}, {high!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"PassRateFilter: threshold must be finite, got {threshold!r}")
        if ttl is not None and (isinstance(ttl, bool) or int(ttl) != ttl or ttl < 1):
            raise ValueError(f"PassRateFilter: ttl must be None or an integer >= 1, got {ttl!r}")
        if group is not None and (not isinstance(group, str) or not group):
            raise ValueError(f"PassRateFilter: group must be None or a column name, got {group!r}")
        self.signal, self.low, self.high = signal, float(low), float(high)
        self.threshold = float(threshold)
        self.ttl = None if ttl is None else int(ttl)
        if not (math.isfinite(power) and power > 0):
            raise ValueError(f"PassRateFilter: power must be > 0, got {power!r}")
        self.group, self.power = group, float(power)

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        dev = ctx.device
        self.rate = torch.full((ctx.n,), -1.0, dtype=torch.float32, device=dev)
        self.until = torch.full((ctx.n,), -1, dtype=torch.int32, device=dev)
        self.queue_item = torch.zeros(0, dtype=torch.int64, device=dev)
        self.queue_until = torch.zeros(0, dtype=torch.int64, device=dev)
        self.t = 0
        if self.group is None:
            self.tree = SumTree(torch.ones(ctx.n, dtype=torch.int32, device=dev))
            return
        # the group prior: the tree holds the seen eligible items only, ``fresh`` the unseen
        # ones in the group-sorted order (group g's block: positions [offset_g, offset_g + s_g))
        col = ctx.require(self.group, "PassRateFilter")
        if col.dtype.kind == "f" and not np.isfinite(col).all():
            raise ValueError(f"PassRateFilter: group column {self.group!r} has NaN or inf values")
        labels, inverse, counts = group_ids(col)
        del col
        ctx.release(self.group)
        self.labels = torch.as_tensor(labels)
        self.K = K = int(labels.size)
        self.bytes_per_item = 25 + inverse.itemsize
        self.item_group = torch.from_numpy(inverse).to(dev)
        order = argsort_labels(inverse, max(1, (K - 1).bit_length()))
        del inverse
        position = np.empty(ctx.n, dtype=np.int32)
        position[order] = np.arange(ctx.n, dtype=np.int32)
        self.order = torch.from_numpy(order).to(dev)
        self.position = torch.from_numpy(position).to(dev)
        self.sizes = np.asarray(counts, dtype=np.int64)
        self.offsets = np.cumsum(self.sizes) - self.sizes
        self.disagreed = np.zeros(K, dtype=np.int64)
        self.agreed = np.zeros(K, dtype=np.int64)
        self.tree = SumTree(torch.zeros(ctx.n, dtype=torch.int32, device=dev))
        self.fresh = SumTree(torch.ones(ctx.n, dtype=torch.int32, device=dev))
        self._cells = None

    def eligible_count(self) -> int:
        return int(self.tree.total) + (int(self.fresh.total) if self.group is not None else 0)

    # -- the group prior -------------------------------------------------------------------
    def informative_share(self) -> np.ndarray:
        """Each group's estimated share of informative prompts, (1 + D_g) / (2 + D_g + A_g)
        (host float64)."""
        return (1.0 + self.disagreed) / (2.0 + self.disagreed + self.agreed)

    def prior(self) -> np.ndarray:
        """The weight of each group's unseen prompts: the estimated share ^ ``power``."""
        share = self.informative_share()
        return share if self.power == 1.0 else share**self.power

    def unseen(self) -> np.ndarray:
        """Unseen prompts per group: s_g - D_g - A_g (host int64)."""
        return self.sizes - self.disagreed - self.agreed

    def cells(self, G: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell ids, sizes, real allocation) of the non-empty cells for a batch of G: cell 0
        the seen eligible items (weight 1), cell 1 + g group g's unseen ones (weight w_g);
        a_j = min(s_j, lam w_j s_j), sum G. Cached until the next update or load."""
        if self._cells is None or self._cells[0] != G:
            sizes = np.concatenate([[int(self.tree.total)], self.unseen()])
            w = np.concatenate([[1.0], self.prior()])
            cid = np.flatnonzero(sizes > 0)
            z = np.log(w[cid]) + np.log(sizes[cid].astype(np.float64))  # share ~ w_j s_j
            self._cells = (G, cid, sizes[cid], alloc.allocate(z, sizes[cid], G))
        return self._cells[1:]

    def probabilities(self) -> torch.Tensor:
        """Each item's expected share of a batch (host float64, sums to 1; O(N), for tests and
        logs): with too few eligible items 1 / N; without a group 1 / (eligible items) for each
        eligible one; with a group a_j / (G s_j) for the items of cell j; 0 for filtered ones."""
        n = self.ctx.n
        G = min(self.ctx.batch or 1, n)
        if self.eligible_count() < G:
            return torch.full((n,), 1.0 / n, dtype=torch.float64)
        known = self.tree.leaves().cpu().numpy() > 0
        if self.group is None:
            return torch.from_numpy(known / float(known.sum()))
        cid, sizes, a = self.cells(G)
        share = np.zeros(self.K + 1)
        share[cid] = a / (G * sizes)
        g = self.item_group.cpu().numpy().astype(np.int64)
        seen = self.rate.cpu().numpy() >= 0
        return torch.from_numpy(np.where(seen, np.where(known, share[0], 0.0), share[1 + g]))

    # -- draw ------------------------------------------------------------------------------
    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, None]:
        a = self.eligible_count()
        G = j.numel()
        if a < G:
            return draw.positions(self.ctx.seed, step, j, self.ctx.n), None
        if self.group is None:
            k = draw.positions(self.ctx.seed, step, j, a)  # distinct ranks among eligible items
            return self.tree.find(k), None
        return self._draw_cells(step, G, j.device), None

    def _draw_cells(self, step: int, G: int, device: torch.device) -> torch.Tensor:
        """G distinct ids: slots allocated to the cells by systematic rounding (one uniform per
        step), then a stratified draw of distinct ranks inside each cell (as
        ``GroupStrategy.slots``)."""
        seed = self.ctx.seed
        cid, sizes, a = self.cells(G)
        A = alloc.cumulative(a, G)
        U = float(rng.uniform_np(rng.bits_np(seed, rng.DRAW, step, np.zeros(1, np.int64)))[0])
        c = alloc.slot_groups(A, sizes, G, U)  # sorted cells, at most s_j slots each
        j = np.arange(G, dtype=np.int64)
        first, cnt = draw.run_bounds_np(c)
        r = j - first
        size = sizes[c]
        start = (r * size) // cnt
        width = ((r + 1) * size) // cnt - start  # >= 1 since cnt <= size: distinct ranks
        rank = start + ((rng.bits_np(seed, rng.DRAW + 16, step, j) * width) >> 32)
        cell = cid[c]
        out = torch.empty(G, dtype=torch.int64, device=device)
        known = cell == 0
        if known.any():
            k = torch.from_numpy(rank[known]).to(device)
            out[torch.from_numpy(np.flatnonzero(known)).to(device)] = self.tree.find(k)
        if not known.all():
            g = cell[~known] - 1
            # unseen items before group g's block in the group-sorted order
            before = np.cumsum(self.unseen()) - self.unseen()
            k = torch.from_numpy(before[g] + rank[~known]).to(device)
            pos = self.fresh.find(k)
            idx = torch.from_numpy(np.flatnonzero(~known)).to(device)
            out[idx] = draw.gather(self.order, pos).to(device)
        return out

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
        if self.group is not None:
            self._first_rollouts(items, keep)
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

    def _first_rollouts(self, items: torch.Tensor, keep: torch.Tensor) -> None:
        """Count the items rolled out for the first time by group (disagreed / agreed) and
        take them out of the unseen tree (before ``rate`` marks them seen)."""
        new = self.rate[items] < 0
        if not bool(new.any()):
            return
        first = items[new]
        g = draw.gather(self.item_group, first).cpu().numpy().astype(np.int64)
        k = keep[new].cpu().numpy()
        self.disagreed += np.bincount(g[k], minlength=self.K)  # integer counts: exact
        self.agreed += np.bincount(g[~k], minlength=self.K)
        pos = self.position[first].to(torch.int64)
        self.fresh.set(pos, torch.zeros_like(pos, dtype=torch.int32), unique=True)
        self._cells = None

    def _readmit(self) -> None:
        """Pop the FIFO entries due by now; re-admit the items they still filter."""
        self._cells = None
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
        eligible = self.tree.leaves().to(torch.uint8)
        if self.group is not None:  # the same format: unseen items are eligible
            eligible = eligible | (self.rate < 0).to(torch.uint8)
        out = {
            "rate": self.rate.cpu().clone(),
            "until": self.until.cpu().clone(),
            "eligible": eligible.cpu().clone(),
            "queue_item": self.queue_item.cpu().clone(),
            "queue_until": self.queue_until.cpu().clone(),
            "t": torch.tensor(self.t, dtype=torch.int64),
        }
        if self.group is not None:
            out["disagreed"] = torch.from_numpy(self.disagreed.copy())
            out["agreed"] = torch.from_numpy(self.agreed.copy())
        return out

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
        has_prior = any(k in state for k in _GROUP_STATE)
        if has_prior != (self.group is not None):
            raise ValueError(
                "PassRateFilter state: saved "
                + ("with" if has_prior else "without")
                + " a group prior, this filter has "
                + (f"group={self.group!r}" if self.group else "none")
            )
        rate = state["rate"].to("cpu", torch.float32).reshape(-1)
        eligible = state["eligible"].to("cpu", torch.int32).reshape(-1)
        if self.group is not None:
            counts = self._check_prior(state, rate, eligible)
            eligible = eligible * (rate >= 0).to(torch.int32)  # the tree holds seen items only
        self.rate = rate.to(dev).clone()
        self.until = state["until"].to(dev, torch.int32).clone()
        self.tree = SumTree(eligible.to(dev))
        self.queue_item = qi.to(dev, torch.int64).clone()
        self.queue_until = qu.to(dev, torch.int64).clone()
        self.t = int(state["t"])
        if self.group is not None:
            self.disagreed, self.agreed = counts
            unseen = (rate < 0).to(torch.int32)[self.order.cpu().to(torch.int64)]
            self.fresh = SumTree(unseen.to(dev))
            self._cells = None

    def _check_prior(
        self, state: dict[str, Any], rate: torch.Tensor, eligible: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """The group counts of a state, checked against its pass rates: D_g + A_g = the seen
        items of group g, and every unseen item eligible."""
        out = []
        for k in _GROUP_STATE:
            t = state.get(k)
            if not isinstance(t, torch.Tensor) or t.numel() != self.K:
                raise ValueError(f"PassRateFilter state: {k} must hold one count per group")
            v = t.reshape(-1).to(torch.int64).numpy().copy()
            if (v < 0).any():
                raise ValueError(f"PassRateFilter state: negative {k} counts")
            out.append(v)
        seen = (rate >= 0).numpy()
        g = self.item_group.cpu().numpy().astype(np.int64)
        if not np.array_equal(out[0] + out[1], np.bincount(g[seen], minlength=self.K)):
            raise ValueError("PassRateFilter state: group counts do not match the seen items")
        if bool((eligible[~torch.from_numpy(seen)] == 0).any()):
            raise ValueError("PassRateFilter state: an unseen item is not eligible")
        return out[0], out[1]

    def stats(self, step: int) -> dict[str, Any]:
        """Eligible items, and the served ones by their recent pass rate (O(N), for logs);
        with a group column, each group's prior weight and unseen count."""
        a = self.eligible_count()
        r = self.rate.cpu()
        seen = r >= 0
        off = (self.tree.leaves().cpu() == 0) & seen
        out = {
            "eligible": a,
            "eligible_fraction": a / self.ctx.n,
            "unseen": int((~seen).sum()),
            "filtered_low": int((off & (r <= self.low)).sum()),
            "filtered_high": int((off & (r >= self.high)).sum()),
            "queued": int(self.queue_item.numel()),
            "entropy": math.log(a if a >= (self.ctx.batch or 1) else self.ctx.n),
        }
        if self.group is not None:
            p = self.probabilities()
            p = p[p > 0]
            out["entropy"] = float(-(p * torch.log(p)).sum())
            out["group_labels"] = self.labels.clone()
            out["group_informative_share"] = torch.from_numpy(self.informative_share())
            out["group_prior"] = torch.from_numpy(self.prior())
            out["group_unseen"] = torch.from_numpy(self.unseen())
            out["group_disagreed"] = torch.from_numpy(self.disagreed.copy())
            out["group_agreed"] = torch.from_numpy(self.agreed.copy())
        return out

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "signal": self.signal,
            "low": self.low,
            "high": self.high,
            "threshold": self.threshold,
            "ttl": self.ttl,
        } | ({"group": self.group, "power": self.power} if self.group is not None else {})
