"""The Sampler: draws global batches from a strategy, slices them per rank, takes feedback.

Determinism: batch t is a pure function of (seed, t, strategy state); randomness comes from the
counter-based hash in ``sampler.rng``; the global numpy / torch RNGs are never used. Resume: the
state (``state_dict``) holds only tensors, numbers and strings and loads with
``torch.load(..., weights_only=True)``.

No repeats: a global batch never holds an id twice, for every strategy, whatever the group
sizes. The one exception is a global batch G larger than the source (N < G): then every id is
served floor(G / N) times and G mod N ids (drawn by the strategy, distinct) once more, so
repeats are spread evenly (each id floor(G / N) or ceil(G / N) times). Uniform, Curriculum and
AngleWindow spread a batch over their servable set S the same way when S < G (S excludes NaN
records with ``nan="exclude"``).

Devices: every tensor the sampler holds per item lives on its ``device``; reductions that end up
in the state or in a batch use fixed-association sums (``draw.pairwise_sum``), never atomics,
and transcendental functions of a batch run on the host, so batches and states are bit-identical
on CPU and CUDA (``tests/test_sampler_gpu.py``).

Snapshots: ``state_dict()`` returns copies (every tensor cloned, on the CPU): training on after
the call never changes a state already returned.

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


def snapshot(obj: Any) -> Any:
    """A deep copy of a state: tensors cloned to the CPU, dicts / lists copied recursively."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


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
        # G > N: every id floor(G / N) times plus G mod N distinct ids from the strategy
        G, n = self.global_batch, self.n
        self._reps, self._rem = divmod(G, n) if G > n and not strategy.any_batch else (0, G)
        self.strategy = strategy
        strategy.bind(
            Context(
                self.n,
                self.device,
                self.seed,
                self.source.has,
                self.source.column,
                batch=min(self.global_batch, self.n),
            )
        )
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
        self.difficulty_n = 0  # served records with a difficulty (NaN ones are not averaged)
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

    def _draw(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The global batch in draw order and its importance weights (normalised by the max)."""
        if not self._reps:
            idx, w = self.strategy.draw(step, self._j)
        else:  # G > N: the whole source floor(G / N) times, then G mod N distinct ids
            every = torch.arange(self.n, device=self.device)
            parts, ws = [every.repeat(self._reps)], []
            w_all = self.strategy.importance(every)
            if w_all is not None:
                ws.append(w_all.repeat(self._reps))
            if self._rem:
                idx, w = self.strategy.draw(step, self._j[: self._rem])
                parts.append(idx)
                if w is not None:
                    ws.append(w)
            idx, w = torch.cat(parts), (torch.cat(ws) if ws else None)
        if w is not None:
            w = (w / w.max()).to(torch.float32).to(self.device)
        return idx, w

    def peek(self, step: int) -> torch.Tensor:
        """The global batch for ``step`` under the current state, without advancing."""
        with self._lock:
            idx, _ = self._draw(step)
            return idx[draw.shuffle_order(self.seed, step, self._j)]

    def sample(self) -> Batch:
        """Draw the global batch for the current step, advance, and return this rank's slice."""
        with self._lock:
            t = self.step
            idx, w = self._draw(t)
            perm = draw.shuffle_order(self.seed, t, self._j)
            w = None if w is None else w[perm]
            d = None
            if draw.on_numpy(self._j):  # numpy on views of the same tensors: same values
                ids = idx.numpy()[perm.numpy()]
                self.seen.numpy()[ids] = 1
                if self.difficulty is not None:
                    x = self.difficulty.numpy()[ids].astype(np.float64)
                    ok = ~np.isnan(x)
                    d = (float(draw.pairwise_sum_np(np.where(ok, x, 0.0))), int(ok.sum()))
                idx = torch.from_numpy(ids)
            else:
                idx = idx[perm]
                self.seen[idx] = 1
                if self.difficulty is not None:
                    x = self.difficulty[idx].to(torch.float64)
                    ok = ~torch.isnan(x)
                    d = (float(draw.pairwise_sum(torch.where(ok, x, 0.0))), int(ok.sum()))
            self.served += idx.numel()
            if d is not None:
                self.difficulty_sum += d[0]
                self.difficulty_n += d[1]
                self.last_difficulty = d[0] / d[1] if d[1] else float("nan")
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
        if dist.get_backend() == "nccl":  # NCCL moves CUDA tensors only: the sampler's own GPU
            dev = (
                self.device
                if self.device.type == "cuda"
                else torch.device("cuda", torch.cuda.current_device())
            )
        else:
            dev = torch.device("cpu")
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
            if fb:  # fixed-association sums (one pass over all signals): same bits everywhere
                names = list(fb)
                stacked = torch.stack([fb[s] for s in names])
                if draw.on_numpy(stacked):
                    sums = draw.pairwise_sum_np(stacked.numpy(), axis=1).tolist()
                else:
                    sums = draw.pairwise_sum(stacked, 1).tolist()
                for s, total in zip(names, sums, strict=True):
                    acc[f"{s}_sum"] += total
                    acc[f"{s}_n"] += fb[s].numel()
            if not validation:
                self.strategy.update(idx, fb)
                self.updates += 1

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the whole state (every tensor a CPU copy): later draws and updates
        never change a state already returned, on any device."""
        with self._lock:
            return snapshot(self._state())

    def _state(self) -> dict[str, Any]:
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
            "difficulty_n": self.difficulty_n,
            "last_difficulty": self.last_difficulty,
            "seen": self.seen,
            "feedback": self.feedback,
            "validation": self.validation,
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
        if not isinstance(seen, torch.Tensor) or seen.numel() != self.n:
            raise ValueError("coverage vector length does not match the source")
        self.strategy.load_state_dict(state["strategy_state"])
        self.seen = seen.to(self.device, torch.uint8).clone()
        self.step = int(state["step"])
        self.updates = int(state["updates"])
        self.served = int(state["served"])
        self.difficulty_sum = float(state["difficulty_sum"])
        self.difficulty_n = int(state.get("difficulty_n", self.served))
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
                "mean_difficulty_served": (  # over served records that have a difficulty
                    self.difficulty_sum / self.difficulty_n
                    if self.difficulty_n and self.difficulty is not None
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
