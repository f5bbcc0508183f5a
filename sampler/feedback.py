"""Feedback handling shared by every strategy: checking it, gathering it over ranks, and the
fixed-association sums behind ``stats()["feedback"]``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import draw
from .dist import comm_device

SIGNALS = ("loss", "reward", "advantage", "correct")


def empty_sums() -> dict[str, Any]:
    return {"count": 0, **{f"{s}_sum": 0.0 for s in SIGNALS}, **{f"{s}_n": 0 for s in SIGNALS}}


def parse(
    indices: Any, values: dict[str, Any], n: int, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Checked ids (int64 on ``device``) and signals (float64, one per id).

    Raises:
        ValueError: bad shapes, non-integer or out-of-range ids, NaN / inf, no signal.
    """
    idx = torch.as_tensor(np.asarray(indices) if isinstance(indices, list) else indices)
    if idx.dim() != 1:
        raise ValueError(f"update: indices must be 1-D, got shape {tuple(idx.shape)}")
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
        raise ValueError(f"update: indices must be integers, got {idx.dtype}")
    idx = idx.to(device, torch.int64)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"update: indices out of range [0, {n})")
    fb: dict[str, torch.Tensor] = {}
    for name, v in values.items():
        if v is None:
            continue
        t = torch.as_tensor(np.asarray(v) if isinstance(v, (list, float, int)) else v)
        t = t.detach().to(device, torch.float64).reshape(-1) if t.dim() <= 1 else t
        if t.dim() != 1 or t.numel() != idx.numel():
            raise ValueError(
                f"update: {name} has {t.numel()} values / shape {tuple(t.shape)}, "
                f"expected {idx.numel()} (one per index)"
            )
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"update: {name} contains NaN or infinite values")
        fb[name] = t
    if not fb:
        raise ValueError("update: give at least one of loss=, reward=, advantage=, correct=")
    return idx, fb


def gather(
    idx: torch.Tensor,
    fb: dict[str, torch.Tensor],
    error: str | None,
    world: int,
    device: torch.device,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Every rank's ids and signals, in rank order (an all-gather, with a validity flag so a
    bad input on any rank raises ``ValueError`` on every rank)."""
    dist = torch.distributed
    dev = comm_device(device)
    mask = sum(1 << i for i, s in enumerate(SIGNALS) if s in fb)
    meta = torch.tensor([idx.numel(), 0 if error else 1, mask], dtype=torch.int64, device=dev)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta)
    metas_l = [m.tolist() for m in metas]
    bad = [r for r, m in enumerate(metas_l) if m[1] == 0]
    if bad:
        raise ValueError(error or f"update: invalid feedback on rank(s) {bad}")
    if len({m[2] for m in metas_l}) != 1:
        raise ValueError("update: every rank must give the same feedback signals")
    longest = max(m[0] for m in metas_l)
    cols = [s for s in SIGNALS if s in fb]
    packed = torch.zeros(longest, 1 + len(cols), dtype=torch.float64, device=dev)
    packed[: idx.numel(), 0] = idx.to(dev, torch.float64)  # exact for ids < 2^53
    for c, s in enumerate(cols):
        packed[: idx.numel(), c + 1] = fb[s].to(dev)
    parts = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(parts, packed)
    allp = torch.cat([p[: m[0]] for p, m in zip(parts, metas_l, strict=True)]).to(device)
    return allp[:, 0].to(torch.int64), {s: allp[:, c + 1] for c, s in enumerate(cols)}


def accumulate(acc: dict[str, Any], idx: torch.Tensor, fb: dict[str, torch.Tensor]) -> None:
    """Add a feedback batch to ``acc`` (count, per-signal sums and counts), summed in a fixed
    order so every device gives the same bits."""
    acc["count"] += idx.numel()
    if not fb:
        return
    names = list(fb)
    stacked = torch.stack([fb[s] for s in names])
    if draw.on_numpy(stacked):
        sums = draw.pairwise_sum_np(stacked.numpy(), axis=1).tolist()
    else:
        sums = draw.pairwise_sum(stacked, 1).tolist()
    for s, total in zip(names, sums, strict=True):
        acc[f"{s}_sum"] += total
        acc[f"{s}_n"] += fb[s].numel()
