"""Prefetch from the sampler's known future: batch t is a pure function of (seed, t, state),
so the host leader can tell its ShardSet which shards the next K batches need, before they are
drawn. A background thread redoes the plan after every draw and, for strategies driven by
feedback, after every update (the state changed, so the predicted batches did too); the
ShardSet fetches the planned shards in the background, as far as its cache limit allows.

Plans for strategies whose draws do not depend on feedback (Uniform, Curriculum) reach
K + K // 4 - 1 batches ahead and are redone every K // 4 draws, for the batches that entered
the window (one peek per step as before, but the planner thread wakes, and competes with the
training thread, a quarter as often; the plan always covers the next K batches); the others
are recomputed in full after each update: K peeks, O(K G) work, off the training thread. A
peek on a host that holds every rank skips the shuffle that deals the batch to the ranks.
The batch drawn last leads the plan while its plan is still valid (its take may come after
the plan, and the set keeps the planned shards pinned).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np


class Planner:
    """Keeps ``shardset``'s prefetch plan at the next ``depth`` batches of ``sampler``."""

    def __init__(self, sampler: Any, shardset: Any, depth: int) -> None:
        if int(depth) != depth or depth < 1:
            raise ValueError(f"prefetch depth must be an integer >= 1, got {depth!r}")
        self.depth = int(depth)
        self.shardset = shardset
        self._sampler = weakref.ref(sampler)
        self._event = threading.Event()
        self._closed = False
        self._cache: dict[int, np.ndarray] = {}
        self._version: int | None = None
        self._last: list[int] | None = None
        self._due = 0  # the step from which a draw asks for a new plan
        self.plans = 0
        self._thread = threading.Thread(target=self._run, name="gradum-plan", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """The state moved (an update, a load): plan again, in the background."""
        self._event.set()

    def advance(self, step: int) -> None:
        """A draw moved the sampler to ``step``: plan again when the plan is due."""
        if step >= self._due:
            self._event.set()

    def close(self) -> None:
        self._closed = True
        self._event.set()

    def _run(self) -> None:
        while True:
            self._event.wait()
            self._event.clear()
            s = self._sampler()
            if self._closed or s is None:
                return
            try:
                self.plan_now(s)
            except Exception:  # a plan is advice: the takes fetch what they need anyway
                pass
            del s

    def plan_now(self, s: Any) -> list[int]:
        """Compute the plan for the sampler's current state, hand it to the ShardSet and
        return it (shard numbers in order of first use)."""
        with s._lock:
            step0, version = s.step, s._version
        if version != self._version:
            self._cache.clear()
            self._version = version
        for t in [t for t in self._cache if t < step0 - 1]:
            del self._cache[t]
        ahead = 1 if s.strategy.adaptive else max(1, self.depth // 4)
        self._due = step0 + ahead
        # the batch drawn last, when planned under this state, leads: its take may still be
        # to come, and the set keeps the planned shards pinned
        steps = [step0 - 1] if step0 - 1 in self._cache else []
        shards: list[int] = []
        for t in steps + list(range(step0, step0 + self.depth + ahead - 1)):
            if t not in self._cache:
                self._cache[t] = self.shardset.shards_of(s.host_rows(t))
            shards.extend(self._cache[t].tolist())
        plan = list(dict.fromkeys(shards))
        if plan != self._last:  # unchanged (most steps of a block round): nothing to wake
            self.shardset.prefetch(plan)
            self._last = plan
        self.plans += 1
        return plan
