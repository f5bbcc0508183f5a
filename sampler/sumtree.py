"""A flat-tensor K-ary sum tree (segment tree) for weighted draws in O(k K log_K N) and updates in
O(u K log_K N), vectorised over the batch with one small group of torch ops per tree level.

Layout: ``levels[-1]`` holds the N leaf weights, zero-padded to a multiple of the fanout K
(default 32); ``levels[d]`` holds the sums of the K-blocks of ``levels[d + 1]``, again padded to
a multiple of K, up to the flat top level ``levels[0]`` of at most TOP (16384) sums. Node i of a
level has children [K i, K i + K) one level down, so ``level.view(-1, K)[i]`` is one contiguous
row (two cache lines of float32 leaves): a binary tree over 1e7 items pays 24 dependent random
reads per draw; this one pays a prefix sum + search over the top level and 2 levels of rows.

Draw (prioritised replay, Schaul et al. ICLR 2016, proportional variant): for targets u in
[0, total), pick the top node by a search in the prefix sums of the top level, then at each level
gather the (B, K) child block, prefix-sum it (cs[0] = 0), pick the child c whose interval
[cs[c], cs[c + 1]) holds u (batched ``searchsorted``) and subtract cs[c]. Zero-weight children
hold empty intervals and are never picked; u is kept strictly below each block's total (the
round-off guard), so a zero-weight leaf is never returned even when sums disagree in the last bit.

Update: write the leaves (duplicate ids: the last one wins, made deterministic by keeping the last
occurrence), then recompute every touched ancestor as the exact sum of its K children, level by
level; duplicated parents are written identical values (deterministic on CPU and CUDA, unlike
``index_add_`` of deltas with atomics). Every sum is ``draw.pairwise_sum`` and every prefix sum
``draw.prefix_sum`` (fixed association, elementwise IEEE additions only), so the tree, its total
and every draw are bit-identical on CPU and CUDA. No deltas are accumulated, so there is no floating-point
drift, and the whole tree is a pure function of the leaves: saving the leaves alone gives an
exact resume.

Precision / memory: leaves keep their dtype (float32 priorities: 4 B per item; int32 0/1 counts:
4 B); internal sums are float64 for float leaves (int64, exact, for integer leaves), about
8 / (K - 1) = 0.26 B per item at K = 32, plus the padding of each level to a multiple of K.
float64 sums of float32 leaves are exact up to about 2^29 leaves of similar size.
"""

from __future__ import annotations

import torch

from . import draw

FANOUT = 32
TOP = 16384  # nodes of the flat top level (a multiple of FANOUT)


class SumTree:
    def __init__(self, leaves: torch.Tensor, fanout: int = FANOUT, top: int = TOP) -> None:
        if leaves.dim() != 1 or leaves.numel() == 0:
            raise ValueError("SumTree needs a non-empty 1-D tensor of leaf weights")
        if int(fanout) != fanout or fanout < 2:
            raise ValueError(f"SumTree: fanout must be an integer >= 2, got {fanout!r}")
        self.n = int(leaves.numel())
        self.K = K = int(fanout)
        self.is_float = leaves.dtype.is_floating_point
        self.sum_dtype = torch.float64 if self.is_float else torch.int64
        dev = leaves.device
        leaf = torch.zeros(-(-self.n // K) * K, dtype=leaves.dtype, device=dev)
        leaf[: self.n] = leaves
        levels = [leaf]
        while levels[-1].numel() > max(int(top), K):
            m = levels[-1].numel() // K
            levels.append(torch.zeros(-(-m // K) * K, dtype=self.sum_dtype, device=dev))
        levels.reverse()  # levels[0] = the flat top level (<= TOP nodes), levels[-1] = leaves
        self.levels = levels
        self.depth = len(levels) - 1
        self._rebuild()

    def _rows(self, d: int) -> torch.Tensor:
        """Level d as (nodes of level d - 1, K) rows."""
        return self.levels[d].view(-1, self.K)

    def _rebuild(self) -> None:
        self._ct = None
        for d in range(self.depth, 0, -1):
            rows = self._rows(d)
            self.levels[d - 1][: rows.shape[0]] = draw.pairwise_sum(rows.to(self.sum_dtype), 1)

    @property
    def total(self) -> float | int:
        v = self._top_prefix()[-1]  # cached; the same number the draws scale by
        return float(v) if self.is_float else int(v)

    def leaves(self) -> torch.Tensor:
        return self.levels[-1][: self.n]

    def get(self, idx: torch.Tensor) -> torch.Tensor:
        return self.levels[-1][idx]

    def _below(self, total: torch.Tensor) -> torch.Tensor:
        """The largest target kept strictly below ``total`` (> 0): a zero-weight child has an
        empty interval, so a target below its block's total always picks a positive child."""
        return total * (1.0 - 2.0**-52) if self.is_float else total - 1

    def find(self, u: torch.Tensor) -> torch.Tensor:
        """Leaf index (0-based item) for each target u in [0, total); O(k K log_K N)."""
        u = u.to(self.sum_dtype).unsqueeze(1).contiguous()  # (B, 1) residual targets
        B = u.shape[0]
        # top level: a search in its prefix sums (cached until the next set)
        ct = self._top_prefix()
        u = torch.minimum(u, self._below(ct[-1:]))
        node = draw.searchsorted(ct, u.view(-1), right=True).sub_(1)
        u = u - ct[node].unsqueeze(1)
        # cs[:, 0] = 0, cs[:, 1:] = inclusive prefix sums of the K children of each node
        cs = torch.zeros(B, self.K + 1, dtype=self.sum_dtype, device=u.device)
        for d in range(1, self.depth + 1):
            block = self._rows(d).index_select(0, node)  # (B, K) children of each node
            cs[:, 1:] = draw.prefix_sum(block.to(self.sum_dtype), 1)
            # round-off guard: keep u strictly below the block total, so the child picked has a
            # positive weight (a zero child has an empty interval)
            u = torch.minimum(u, self._below(cs[:, -1:]))
            # child c whose interval [cs[c], cs[c + 1]) holds u
            c = torch.searchsorted(cs, u, right=True).sub_(1)
            u = u - cs.gather(1, c)
            node = torch.add(c.squeeze(1), node, alpha=self.K)
        return node.clamp_(max=self.n - 1)

    def _top_prefix(self) -> torch.Tensor:
        """[0, prefix sums of the top level]: computed once per change of the tree."""
        if self._ct is None:
            top = self.levels[0].to(self.sum_dtype)
            ct = torch.zeros(top.numel() + 1, dtype=self.sum_dtype, device=top.device)
            ct[1:] = draw.prefix_sum(top)
            self._ct = ct
        return self._ct

    def set(self, idx: torch.Tensor, values: torch.Tensor, unique: bool = False) -> None:
        """Set leaves ``idx`` to ``values`` (duplicate ids: the last one wins) and recompute the
        ancestors from their children; O(u K log_K N). ``unique=True`` skips the de-duplication
        when the caller guarantees distinct ids."""
        if idx.numel() == 0:
            return
        idx = idx.to(torch.int64)
        values = values.to(self.levels[-1].dtype)
        if not unique and idx.numel() > 1:
            keep = draw.last_occurrence(idx)
            idx, values = idx[keep], values[keep]
        self._ct = None
        self.levels[-1][idx] = values
        node = idx
        for d in range(self.depth, 0, -1):
            node = node // self.K
            # duplicate parents are given identical sums, so the result is deterministic
            sums = draw.pairwise_sum(self._rows(d).index_select(0, node).to(self.sum_dtype), 1)
            self.levels[d - 1][node] = sums
