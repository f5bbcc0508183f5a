"""The Sampler: draws global batches from a strategy, slices them per rank, takes feedback.

Determinism: batch t is a pure function of (seed, t, strategy state); randomness comes from the
counter-based hash in ``sampler.rng``; the global numpy / torch RNGs are never used. Resume: the
state (``state_dict``) holds only tensors, numbers and strings and loads with
``torch.load(..., weights_only=True)``.

Distributed: with torch.distributed initialised, ``batch_size`` is per rank; every rank draws the
same global batch of ``batch_size * world_size`` distinct ids and keeps slice
[rank B, (rank + 1) B); ``update`` all-gathers the feedback (and a validity flag, so a bad input
on any rank raises ``ValueError`` on every rank with nothing changed) so all ranks keep the same
state.

Thread safety / staleness: draws and updates hold one lock and strategies swap derived tensors
(probabilities, CDFs) in whole, so a draw never sees a half-applied update. A batch drawn at step
t reflects every update applied before it was drawn; with a DataLoader that prefetches, the
staleness is the prefetch depth (see ``sampler.torch``).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import draw
from .source import Source
from .strategies.base import Context, Strategy

SIGNALS = ("loss", "reward", "advantage", "correct")
FORMAT = "gradum.sampler/1"


@dataclass
class Batch:
    """One batch for this rank: ``indices`` (LongTensor of row ids), the ``step`` it was drawn
    at, importance ``weights`` (Prioritized only, else None) and the ``global_indices`` of the
    whole global batch."""

    indices: torch.Tensor
    step: int
    weights: torch.Tensor | None
    global_indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.numel())


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class Sampler:
    """``Sampler(source, strategy, batch_size, seed=0, device=None)``.

    ``source``: a ``shards.ShardSet``, a path to a scored dataset, or a dict of arrays such as
    ``{"difficulty": ..., "cluster": ...}``. ``device``: defaults to CUDA when available, else CPU.
    Iterating yields ``Batch`` objects forever (one per step).
    """

    def __init__(
        self,
        source: Any,
        strategy: Strategy,
        batch_size: int,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise ValueError(
                f"Sampler: strategy must be a sampler.strategies object, got {strategy!r}"
            )
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"Sampler: batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"Sampler: seed must be an integer >= 0, got {seed!r}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.source = Source(source)
        self.n = self.source.num_rows
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.world_size, self.rank = _dist()
        self.global_batch = self.batch_size * self.world_size
        if self.global_batch > self.n:
            raise ValueError(
                f"Sampler: global batch {self.global_batch} is larger than the source ({self.n} rows)"
            )
        self.strategy = strategy
        strategy.bind(Context(self.n, self.device, self.seed, self.source.has, self.source.column))
        self.difficulty: torch.Tensor | None = None
        if self.source.has("difficulty"):
            d = np.asarray(self.source.column("difficulty"), dtype=np.float32)
            self.difficulty = torch.from_numpy(np.array(d, copy=True)).to(self.device)
        self._j = torch.arange(self.global_batch, device=self.device)
        self._lock = threading.RLock()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.step = 0
        self.updates = 0
        self.seen = torch.zeros(self.n, dtype=torch.uint8, device=self.device)
        self.served = 0
        self.difficulty_sum = 0.0
        self.last_difficulty = float("nan")
        self.feedback = {
            "count": 0,
            **{f"{s}_sum": 0.0 for s in SIGNALS},
            **{f"{s}_n": 0 for s in SIGNALS},
        }
        self.validation = dict(self.feedback)

    @property
    def bytes_per_item(self) -> int:
        """Per-item bytes held on the device: strategy state + 1 B coverage (+ 4 B difficulty)."""
        return self.strategy.bytes_per_item + 1 + (4 if self.difficulty is not None else 0)

    # -- drawing ---------------------------------------------------------------------------
    def __iter__(self) -> Sampler:
        return self

    def __next__(self) -> Batch:
        return self.sample()

    def peek(self, step: int) -> torch.Tensor:
        """The global batch for ``step`` under the current state, without advancing."""
        with self._lock:
            idx, _ = self.strategy.draw(step, self._j)
            return idx[draw.shuffle_order(self.seed, step, self._j)]

    def sample(self) -> Batch:
        """Draw the global batch for the current step, advance, and return this rank's slice."""
        with self._lock:
            t = self.step
            idx, w = self.strategy.draw(t, self._j)
            perm = draw.shuffle_order(self.seed, t, self._j)
            w = None if w is None else w[perm]
            if draw.on_numpy(self._j):  # numpy on views of the same tensors: same values
                ids = idx.numpy()[perm.numpy()]
                self.seen.numpy()[ids] = 1
                d = (
                    None
                    if self.difficulty is None
                    else self.difficulty.numpy()[ids].sum(dtype=np.float64)
                )
                idx = torch.from_numpy(ids)
            else:
                idx = idx[perm]
                self.seen[idx] = 1
                d = (
                    None
                    if self.difficulty is None
                    else self.difficulty[idx].sum(dtype=torch.float64)
                )
            self.served += idx.numel()
            if d is not None:
                self.difficulty_sum += float(d)
                self.last_difficulty = float(d) / idx.numel()
            self.step = t + 1
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        return Batch(idx[lo:hi], t, None if w is None else w[lo:hi], idx)

    # -- feedback --------------------------------------------------------------------------
    def _parse(
        self, indices: Any, values: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        idx = torch.as_tensor(np.asarray(indices) if isinstance(indices, list) else indices)
        if idx.dim() != 1:
            raise ValueError(f"update: indices must be 1-D, got shape {tuple(idx.shape)}")
        if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
            raise ValueError(f"update: indices must be integers, got {idx.dtype}")
        idx = idx.to(self.device, torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            raise ValueError(f"update: indices out of range [0, {self.n})")
        fb: dict[str, torch.Tensor] = {}
        for name, v in values.items():
            if v is None:
                continue
            t = torch.as_tensor(np.asarray(v) if isinstance(v, (list, float, int)) else v)
            t = t.detach().to(self.device, torch.float64).reshape(-1) if t.dim() <= 1 else t
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

    def _gather(self, idx: torch.Tensor, fb: dict[str, torch.Tensor], error: str | None):
        dist = torch.distributed
        dev = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
        mask = sum(1 << i for i, s in enumerate(SIGNALS) if s in fb)
        meta = torch.tensor([idx.numel(), 0 if error else 1, mask], dtype=torch.int64, device=dev)
        metas = [torch.empty_like(meta) for _ in range(self.world_size)]
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
        parts = [torch.empty_like(packed) for _ in range(self.world_size)]
        dist.all_gather(parts, packed)
        allp = torch.cat([p[: m[0]] for p, m in zip(parts, metas_l, strict=True)]).to(self.device)
        return allp[:, 0].to(torch.int64), {s: allp[:, c + 1] for c, s in enumerate(cols)}

    def update(
        self,
        indices: Any,
        loss: Any = None,
        reward: Any = None,
        advantage: Any = None,
        correct: Any = None,
        *,
        validation: bool = False,
    ) -> None:
        """Feed back per-example signals for ``indices`` (this rank's ids). NaN / inf values,
        wrong lengths, out-of-range ids or a signal the strategy needs but did not get raise
        ``ValueError`` and leave the state exactly as it was. ``validation=True`` records the
        values in ``stats()["validation"]`` only; they never reach the strategy."""
        values = {"loss": loss, "reward": reward, "advantage": advantage, "correct": correct}
        distributed = self.world_size > 1 and _dist()[0] > 1
        error = None
        try:
            idx, fb = self._parse(indices, values)
        except ValueError as e:
            if not distributed:
                raise
            error, idx, fb = str(e), torch.zeros(0, dtype=torch.int64), {}
        with self._lock:
            if distributed:
                idx, fb = self._gather(idx, fb, error)
            if not validation:
                self.strategy.check(idx, fb)
            acc = self.validation if validation else self.feedback
            acc["count"] += idx.numel()
            for s, v in fb.items():
                acc[f"{s}_sum"] += float(v.sum())
                acc[f"{s}_n"] += v.numel()
            if not validation:
                self.strategy.update(idx, fb)
                self.updates += 1

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "format": FORMAT,
                "strategy": self.strategy.name,
                "n": self.n,
                "seed": self.seed,
                "global_batch": self.global_batch,
                "step": self.step,
                "updates": self.updates,
                "served": self.served,
                "difficulty_sum": self.difficulty_sum,
                "last_difficulty": self.last_difficulty,
                "seen": self.seen.cpu().clone(),
                "feedback": dict(self.feedback),
                "validation": dict(self.validation),
                "strategy_state": self.strategy.state_dict(),
            }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; a mismatching state raises ``ValueError`` and changes
        nothing. A different world size is accepted (elastic resume): the stream continues from
        the saved step with the new global batch size."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("load_state_dict: not a gradum sampler state")
        for key, mine in (("strategy", self.strategy.name), ("n", self.n), ("seed", self.seed)):
            if state.get(key) != mine:
                raise ValueError(
                    f"load_state_dict: state has {key}={state.get(key)!r}, sampler has {mine!r}"
                )
        with self._lock:
            backup = self.state_dict()
            try:
                self._load(state)
            except Exception as e:
                self._load(backup)
                raise ValueError(f"load_state_dict: {e}") from e

    def _load(self, state: dict[str, Any]) -> None:
        seen = state["seen"]
        if seen.numel() != self.n:
            raise ValueError("coverage vector length does not match the source")
        self.strategy.load_state_dict(state["strategy_state"])
        self.seen = seen.to(self.device, torch.uint8).clone()
        self.step = int(state["step"])
        self.updates = int(state["updates"])
        self.served = int(state["served"])
        self.difficulty_sum = float(state["difficulty_sum"])
        self.last_difficulty = float(state["last_difficulty"])
        self.feedback = dict(state["feedback"])
        self.validation = dict(state["validation"])

    # -- observability ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """step, served, coverage (fraction of items served at least once), mean difficulty
        served (overall and last batch), entropy of the current draw distribution, mean feedback
        values (training and validation kept apart), plus strategy specifics
        (``group_probabilities`` for group strategies)."""
        with self._lock:
            out: dict[str, Any] = {
                "strategy": self.strategy.name,
                "step": self.step,
                "updates": self.updates,
                "served": self.served,
                "coverage": float(self.seen.sum(dtype=torch.int64)) / self.n,
                "mean_difficulty_served": (
                    self.difficulty_sum / self.served
                    if self.served and self.difficulty is not None
                    else float("nan")
                ),
                "last_batch_difficulty": self.last_difficulty,
                "bytes_per_item": self.bytes_per_item,
            }
            for name, acc in (("feedback", self.feedback), ("validation", self.validation)):
                out[name] = {"count": acc["count"]} | {
                    f"mean_{s}": acc[f"{s}_sum"] / acc[f"{s}_n"] for s in SIGNALS if acc[f"{s}_n"]
                }
            out.update(self.strategy.stats(self.step))
            if "entropy" in out and not math.isfinite(out["entropy"]):
                out["entropy"] = float("nan")
            return out
