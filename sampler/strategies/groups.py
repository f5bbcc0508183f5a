"""The group layer shared by the bandits over groups (``UCB``, ``EXP3``): arms are the values of
a group column (clusters, sources, buckets, levels); items inside a group are served uniformly,
without repeats.

A subclass sets the group logits ``z`` (the target group shares are p = softmax(z)) with
``_set_logits`` whenever its statistics change; everything else is here:

- bind: labels, item -> group (on the device: int16 for up to 32768 groups, else int32), the
  group-sorted order (int32 on the device, stable: ids ascending inside a group), group sizes
  and offsets (host). Both tables are built without an N-sized int64 temporary (chunked
  bincount and remap; a counting sort straight into the int32 order), and the group column
  read from the source is released once they exist.
- draw (no id twice in a batch, whatever the group sizes): the G slots are allocated to groups
  by ``sampler.alloc``: a_j = min(s_j, lam p_j) with sum a_j = G (a group smaller than its share
  serves all its items and gives its remainder to the others in proportion to their
  probabilities: the allocation closest to the softmax in KL), rounded systematically to counts
  c_j in {floor(a_j), ceil(a_j)}, c_j <= s_j. Inside group j the c_j slots are a stratified draw
  of distinct positions in its contiguous block of the group-sorted order: slot r takes a
  uniform position in [r s_j // c_j, (r + 1) s_j // c_j). O(G log K) per batch; the allocation
  is recomputed (O(K log K) only when a cap binds) once per state change.
- feedback segments: the feedback ids mapped to their groups and sorted by group (stable), so a
  subclass reduces per-group sums with ``np.add.reduceat`` (sequential, fixed order, no atomics).

Devices: the group layer (K groups) lives on the host in numpy float64 on every device, so its
bits do not depend on the device's math library or reduction order; only the per-item tables
(order, item -> group) live on the sampler's device. Per-item state: 6 B (int32 order, int16
item -> group; 8 B above 32768 groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import alloc, draw, rng
from ..sort import argsort_labels
from .base import Context, Strategy, group_ids


@dataclass
class Segments:
    """Feedback grouped by group: ``order`` sorts the feedback by group (stable), ``gs`` are the
    sorted group ids, ``first`` / ``cnt`` each sorted value's run start and run length,
    ``heads`` the run starts, ``ug`` / ``c`` the groups present and their value counts."""

    g32: np.ndarray
    order: np.ndarray
    gs: np.ndarray
    first: np.ndarray
    cnt: np.ndarray
    heads: np.ndarray
    ug: np.ndarray
    c: np.ndarray


class GroupStrategy(Strategy):
    """Base class of the bandits over groups (see the module docstring)."""

    bytes_per_item = 6
    group_based = True
    adaptive = True  # feedback moves the group probabilities
    group = "cluster"

    def bind(self, ctx: Context) -> None:
        super().bind(ctx)
        who = type(self).__name__
        col = ctx.require(self.group, who)
        if col.dtype.kind == "f" and not np.isfinite(col).all():
            raise ValueError(f"{who}: group column {self.group!r} has NaN or inf values")
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

    def _set_logits(self, z: np.ndarray) -> None:
        """New group logits (finite float64, length K); the allocation cache is dropped."""
        self.z, self._alloc = z, {}

    # -- draw ------------------------------------------------------------------------------
    def allocation(self, G: int) -> np.ndarray:
        """Expected slots per group in a batch of G: a_j = min(s_j, lam p_j), sum G."""
        if G not in self._alloc:
            self._alloc[G] = alloc.allocate(self.z, self.sizes, G)
        return self._alloc[G]

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
    def segments(self, idx: torch.Tensor) -> Segments:
        """The feedback ids ``idx`` grouped by group (host numpy)."""
        g32 = draw.gather(self.item_group, idx).cpu().numpy()
        # stable sort by group; on uint16 keys numpy uses a radix sort
        order = np.argsort(g32.astype(np.uint16) if self.K <= 65536 else g32, kind="stable")
        gs = g32.astype(np.int64)[order]
        first, cnt = draw.run_bounds_np(gs)
        heads = np.flatnonzero(first == np.arange(gs.size))
        return Segments(g32, order, gs, first, cnt, heads, gs[heads], cnt[heads])

    def group_stats(self, probs: torch.Tensor) -> dict[str, Any]:
        """Labels, probabilities (target shares), entropy, sizes and served shares."""
        ent = float(-(probs * torch.log(probs.clamp(min=1e-300))).sum())
        out = {
            "group_labels": self.labels.clone(),
            "group_probabilities": probs.clone(),
            "group_target_share": probs.clone(),
            "group_sizes": torch.from_numpy(self.sizes.copy()),
            "entropy": ent,
        }
        G = self.ctx.batch
        if G:
            out["group_served_share"] = torch.from_numpy(self.allocation(G) / G)
        return out
