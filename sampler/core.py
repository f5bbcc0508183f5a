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

Distributed: with torch.distributed initialised, ``batch_size`` is per rank and the global
batch is ``batch_size * world_size`` distinct ids; rank r keeps slice [r B, (r + 1) B).
``share="host"`` (default): only the lowest rank of each host holds the per-item state and
draws; it broadcasts the global batch to the other ranks of its host (``sampler.dist``), so a
host holds one copy of the state, not one per GPU. ``share="none"``: every rank holds the state
and draws the same batch itself. ``update`` all-gathers the feedback (and a validity flag, so a
bad input on any rank raises ``ValueError`` on every rank with nothing changed), so every
state holder applies the same feedback. The process group is checked at every draw and update:
a Sampler built before ``init_process_group`` binds itself before its first draw; one whose
group changed after it started drawing raises ``RuntimeError`` (build it after the group
exists, or load its state into a new Sampler to resume at another world size).

Thread safety / staleness: draws and updates hold one lock and strategies swap derived tensors
(probabilities, CDFs) in whole, so a draw never sees a half-applied update. A batch drawn at step
t reflects every update applied before it was drawn; with a DataLoader that prefetches, the
staleness is the prefetch depth (see ``sampler.torch``).

Prefetch: over a remote ShardSet, the host leader keeps the set fetching the shards of its next
``prefetch`` batches in the background (``sampler.prefetch``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import dist as dist_
from . import draw
from . import feedback as fb_
from .coverage import Coverage
from .prefetch import Planner
from .source import Source
from .state import FORMAT, StateMixin, snapshot
from .strategies.base import Context, Strategy

__all__ = ["FORMAT", "Batch", "Sampler", "snapshot"]
SIGNALS = fb_.SIGNALS
log = logging.getLogger("gradum.sampler")


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


class Sampler(StateMixin):
    """``Sampler(source, strategy, batch_size, seed=0, device=None, share="host",
    prefetch=None)``.

    ``source``: a ``shards.ShardSet``, a path to a scored dataset, or a dict of arrays such as
    ``{"difficulty": ..., "cluster": ...}``. ``device``: defaults to CUDA when available, else CPU.
    ``share``: ``"host"`` (one copy of the per-item state per host) or ``"none"`` (one per
    rank). ``prefetch``: batches ahead whose shards a remote ShardSet fetches in the
    background (default 4 for a remote set, else 0). Iterating yields ``Batch`` objects forever.
    """

    def __init__(
        self,
        source: Any,
        strategy: Strategy,
        batch_size: int,
        seed: int = 0,
        device: str | torch.device | None = None,
        *,
        share: str = "host",
        prefetch: int | None = None,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise ValueError(
                f"Sampler: strategy must be a sampler.strategies object, got {strategy!r}"
            )
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"Sampler: batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"Sampler: seed must be an integer >= 0, got {seed!r}")
        if share not in dist_.SHARES:
            raise ValueError(f"Sampler: share must be one of {dist_.SHARES}, got {share!r}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.source = Source(source)
        self.n = self.source.num_rows
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.share = share
        self.strategy = strategy
        self.difficulty: torch.Tensor | None = None
        self.coverage: Coverage | None = None
        self._lock = threading.RLock()
        self._version = 0  # bumped when feedback or a load changes what the draws will be
        self._planner: Planner | None = None
        remote = bool(getattr(self.source.shardset, "is_remote", False))
        self.prefetch = (4 if remote else 0) if prefetch is None else int(prefetch)
        if self.prefetch < 0:
            raise ValueError(f"Sampler: prefetch must be >= 0, got {prefetch!r}")
        self._reset_counters()
        self._bind()

    # -- binding ---------------------------------------------------------------------------
    def _bind(self) -> None:
        """Read the process group; build the per-item state on the ranks that hold it."""
        self.ranks = dist_.bind(self.share, self.device)
        self.world_size, self.rank = self.ranks.world, self.ranks.rank
        self.global_batch = self.batch_size * self.world_size
        G, n = self.global_batch, self.n
        # G > N: every id floor(G / N) times plus G mod N distinct ids from the strategy
        any_batch = self.strategy.any_batch
        self._reps, self._rem = divmod(G, n) if G > n and not any_batch else (0, G)
        self._j = torch.arange(G, device=self.device)
        if not self.ranks.leader:
            self.strategy.unbind()
            self.difficulty = self.coverage = None
            self._close_planner()
            return
        if self.strategy.bound:
            self.strategy.ctx.batch = min(G, n)
        else:
            self.strategy.bind(
                Context(
                    n,
                    self.device,
                    self.seed,
                    self.source.has,
                    self.source.column,
                    batch=min(G, n),
                    release=self.source.release,
                    layout=self.source.layout,
                )
            )
        if self.difficulty is None and self.source.has("difficulty"):
            d = np.asarray(self.source.column("difficulty"), dtype=np.float32)
            if not self.source.owned:  # the user's array: keep a copy they cannot change
                d = np.array(d, copy=True)
            self.difficulty = torch.from_numpy(d).to(self.device)
        if self.coverage is None:
            self.coverage = Coverage(n, self.device)
        if self.prefetch and self._planner is None and self.source.shardset is not None:
            if getattr(self.source.shardset, "is_remote", False):
                self._planner = Planner(self, self.source.shardset, self.prefetch)
                self._planner.poke()

    def _ensure_ranks(self) -> None:
        """Check the process group against the binding (every draw and update)."""
        world, rank = dist_.current()
        if (world, rank) == (self.world_size, self.rank):
            return
        if self.step == 0 and self.updates == 0:
            log.info(
                "Sampler: rebound from world size %d rank %d to world size %d rank %d "
                "(it was built before the process group)",
                self.world_size,
                self.rank,
                world,
                rank,
            )
            self._bind()
            return
        raise RuntimeError(
            f"Sampler: built for world size {self.world_size} rank {self.rank}, but "
            f"torch.distributed now reports world size {world} rank {rank} after "
            f"{self.step} draws; build the Sampler after init_process_group (every rank "
            "would otherwise serve the same batch), or load its state_dict into a new "
            "Sampler to resume at another world size"
        )

    def _close_planner(self) -> None:
        if self._planner is not None:
            self._planner.close()
            self._planner = None

    def close(self) -> None:
        """Stop background prefetch planning (the sampler stays usable)."""
        self._close_planner()

    def __del__(self) -> None:
        try:
            self._close_planner()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    @property
    def holds_state(self) -> bool:
        """Whether this rank holds the per-item state (always, unless ``share="host"`` and
        another rank of this host is its leader)."""
        return self.ranks.leader

    @property
    def bytes_per_item(self) -> float:
        """Per-item bytes held on the device: strategy state + 1 bit coverage (+ 4 B float32
        difficulty); 0 on a rank that holds no state."""
        if not self.ranks.leader:
            return 0
        return self.strategy.bytes_per_item + 0.125 + (4 if self.difficulty is not None else 0)

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
        """The global batch for ``step`` under the current state, without advancing (on a rank
        that holds the state)."""
        if not self.ranks.leader:
            raise RuntimeError(
                f"Sampler.peek: rank {self.rank} holds no per-item state (share='host'); "
                f"peek on rank {self.ranks.leader_rank}, or build with share='none'"
            )
        with self._lock:
            idx, _ = self._draw(step)
            return idx[draw.shuffle_order(self.seed, step, self._j)]

    def host_rows(self, step: int) -> torch.Tensor:
        """The rows the ranks of this host will take at ``step`` (their slices of peek; when
        the host holds every rank, the whole global batch in draw order: the same rows,
        without computing the shuffle that deals them to the ranks)."""
        if len(self.ranks.host_ranks) == self.world_size and self.ranks.leader:
            with self._lock:
                return self._draw(step)[0]
        idx = self.peek(step)
        B = self.batch_size
        return torch.cat([idx[r * B : (r + 1) * B] for r in self.ranks.host_ranks])

    def sample(self) -> Batch:
        """Draw the global batch for the current step, advance, and return this rank's slice."""
        self._ensure_ranks()
        with self._lock:
            t = self.step
            idx = w = None
            d = (0.0, 0)
            if self.ranks.leader:
                idx, w, d = self._leader_draw(t)
            if self.ranks.broadcasts:
                idx, w, d = self._share(idx, w, d)
            self.served += idx.numel()
            self.difficulty_sum += d[0]
            self.difficulty_n += d[1]
            if self.difficulty is not None or self.ranks.broadcasts:
                self.last_difficulty = d[0] / d[1] if d[1] else float("nan")
            self.step = t + 1
        if self._planner is not None:
            self._planner.advance(t + 1)
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        return Batch(idx[lo:hi], t, None if w is None else w[lo:hi], idx)

    def _leader_draw(self, t: int) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
        idx, w = self._draw(t)
        perm = draw.shuffle_order(self.seed, t, self._j)
        w = None if w is None else w[perm]
        d = (0.0, 0)
        if draw.on_numpy(self._j):  # numpy on views of the same tensors: same values
            ids = idx.numpy()[perm.numpy()]
            if self.difficulty is not None:
                x = self.difficulty.numpy()[ids].astype(np.float64)
                ok = ~np.isnan(x)
                d = (float(draw.pairwise_sum_np(np.where(ok, x, 0.0))), int(ok.sum()))
            idx = torch.from_numpy(ids)
        else:
            idx = idx[perm]
            if self.difficulty is not None:
                x = self.difficulty[idx].to(torch.float64)
                ok = ~torch.isnan(x)
                d = (float(draw.pairwise_sum(torch.where(ok, x, 0.0))), int(ok.sum()))
        self.coverage.mark(idx)
        return idx, w, d

    def _share(self, idx, w, d):  # noqa: ANN001, ANN202
        """The leader's batch, weights and served-difficulty sums, on every rank of the host:
        one int64 broadcast of [ids (G) | weight bits (G) | has weights, sum bits, count]."""
        G = self.global_batch
        packet = torch.zeros(2 * G + 3, dtype=torch.int64)
        if self.ranks.leader:
            packet[:G] = idx.cpu()
            if w is not None:
                packet[G : 2 * G] = w.cpu().to(torch.float64).view(torch.int64)
                packet[2 * G] = 1
            packet[2 * G + 1] = torch.tensor([d[0]], dtype=torch.float64).view(torch.int64)[0]
            packet[2 * G + 2] = d[1]
        packet = dist_.broadcast(packet, self.ranks, self.device).cpu()
        if self.ranks.leader:
            return idx, w, d
        ids = packet[:G].to(self.device)
        w = packet[G : 2 * G].view(torch.float64).to(torch.float32).to(self.device)
        dsum = float(packet[2 * G + 1 : 2 * G + 2].view(torch.float64)[0])
        return ids, (w if int(packet[2 * G]) else None), (dsum, int(packet[2 * G + 2]))

    # -- feedback --------------------------------------------------------------------------
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
        self._ensure_ranks()
        values = {"loss": loss, "reward": reward, "advantage": advantage, "correct": correct}
        distributed = self.world_size > 1
        error = None
        try:
            idx, fb = fb_.parse(indices, values, self.n, self.device)
        except ValueError as e:
            if not distributed:
                raise
            error, idx, fb = str(e), torch.zeros(0, dtype=torch.int64), {}
        with self._lock:
            if distributed:
                idx, fb = fb_.gather(idx, fb, error, self.world_size, self.device)
            if not validation:
                self.strategy.check(idx, fb)
            fb_.accumulate(self.validation if validation else self.feedback, idx, fb)
            if not validation:
                if self.ranks.leader:
                    self.strategy.update(idx, fb)
                    if self.strategy.adaptive:
                        self._version += 1
                self.updates += 1
        if self._planner is not None and not validation and self.strategy.adaptive:
            self._planner.poke()
