"""A flat-tensor sum tree (segment tree) for weighted draws in O(k log N) and updates in
O(u log N), vectorised over the batch with one torch op group per tree level.

Layout: ``tree`` has 2L entries, L = next power of two >= N; leaves live at [L, L + N), node i
has children 2i and 2i + 1, ``tree[1]`` is the total. Draw (prioritised replay, Schaul et al.
ICLR 2016, proportional variant): for targets u in [0, total) descend from the root, going right
when u >= left-child sum (u -= left). Update: write the leaves, then recompute every ancestor as
the exact sum of its two children (no delta accumulation, so no floating-point drift).

Memory: 2L values; float32 = 8 to 16 bytes per item, int32 the same (for 0/1 counts, exact up to
2^31 items).
"""

from __future__ import annotations

import torch


class SumTree:
    def __init__(self, leaves: torch.Tensor) -> None:
        if leaves.dim() != 1 or leaves.numel() == 0:
            raise ValueError("SumTree needs a non-empty 1-D tensor of leaf weights")
        self.n = int(leaves.numel())
        self.depth = max(1, (self.n - 1).bit_length())
        self.L = 1 << self.depth
        self.tree = torch.zeros(2 * self.L, dtype=leaves.dtype, device=leaves.device)
        self.tree[self.L : self.L + self.n] = leaves
        self._rebuild()

    def _rebuild(self) -> None:
        lo = self.L
        while lo > 1:
            child = self.tree[lo : 2 * lo]
            self.tree[lo // 2 : lo] = child.view(-1, 2).sum(1)
            lo //= 2

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def leaves(self) -> torch.Tensor:
        return self.tree[self.L : self.L + self.n]

    def find(self, u: torch.Tensor) -> torch.Tensor:
        """Leaf index (0-based item) for each target u in [0, total); O(k log N)."""
        node = torch.ones(u.shape, dtype=torch.int64, device=u.device)
        if not self.tree.dtype.is_floating_point:
            u = u.to(torch.int64)
        pairs = self.tree.view(-1, 2)  # pairs[i] = (left child, right child) of node i
        for _ in range(self.depth):
            left = pairs[node, 0]
            go = u >= left
            u = u - left * go
            node = torch.add(go, node, alpha=2)
        return (node - self.L).clamp_(max=self.n - 1)

    def set(self, idx: torch.Tensor, values: torch.Tensor) -> None:
        """Set leaves ``idx`` to ``values`` (duplicates: last wins) and fix ancestors; O(u log N)."""
        if idx.numel() == 0:
            return
        node = idx + self.L
        self.tree.index_put_((node,), values.to(self.tree.dtype))
        for _ in range(self.depth):
            node = node // 2
            # duplicate parents write identical sums, so the result is deterministic
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]
