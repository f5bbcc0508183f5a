"""Background downloads in the order a sampler will need the shards.

A :class:`Prefetcher` holds a *plan*: shard numbers in the order of first use (the sampler's
next K batches). Worker threads take the first planned shard that is neither known to be
cached nor being fetched, as long as the bytes of the plan up to it fit in the budget (the
cache limit: prefetching further would evict shards needed sooner), and fetch it. A new plan
replaces the old one at once (strategies driven by feedback correct their plan after each
update); downloads already running finish. ``urgent`` shards (a take() that found them
missing) go first, until they are cached: then they leave the urgent list (a shard listed both
as urgent and in the plan counts once against the budget).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence


class Prefetcher:
    """``fetch(i)`` downloads shard i; ``cached(i)`` says whether it is already there;
    ``size(i)`` its bytes; at most ``budget`` planned bytes ahead (None: no limit)."""

    def __init__(
        self,
        fetch: Callable[[int], None],
        cached: Callable[[int], bool],
        size: Callable[[int], int],
        budget: int | None,
        threads: int = 4,
    ) -> None:
        if threads < 1:
            raise ValueError(f"prefetch threads must be >= 1, got {threads!r}")
        self._fetch, self._cached, self._size, self.budget = fetch, cached, size, budget
        self._cond = threading.Condition()
        self._plan: list[int] = []
        self._urgent: list[int] = []
        self._running: set[int] = set()
        self._ready: set[int] = set()
        self._closed = False
        self.errors: list[str] = []
        self.fetched = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"gradum-prefetch-{k}", daemon=True)
            for k in range(threads)
        ]
        for t in self._threads:
            t.start()

    def plan(self, shards: Sequence[int]) -> None:
        """Replace the plan (duplicates dropped, order kept)."""
        with self._cond:
            self._plan = list(dict.fromkeys(int(s) for s in shards))
            self._cond.notify_all()

    def urgent(self, shards: Sequence[int]) -> None:
        """Fetch these before anything planned (a take is waiting for them)."""
        with self._cond:
            self._urgent = list(dict.fromkeys(int(s) for s in shards))
            self._cond.notify_all()

    def forget(self, shard: int) -> None:
        """``shard`` left the cache (evicted): fetch it again when planned."""
        with self._cond:
            self._ready.discard(shard)

    def running(self, shard: int) -> bool:
        with self._cond:
            return shard in self._running

    def idle(self) -> bool:
        """Nothing running and nothing left to fetch within the budget."""
        with self._cond:
            return not self._running and self._next() is None

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until :meth:`idle` (tests, benchmarks); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._running and self._next() is None, timeout=timeout
            )

    def _next(self) -> int | None:
        """The next shard to fetch (call with the condition held)."""
        # urgent shards that are cached are done: left in the list, they would count twice
        # against the budget (the plan lists them too) and be fetched again once evicted
        self._urgent = [s for s in self._urgent if s in self._running or not self._is_ready(s)]
        spent = 0
        for s in dict.fromkeys(self._urgent + self._plan):
            spent += self._size(s)
            if self.budget is not None and spent > self.budget:
                return None
            if s not in self._running and not self._is_ready(s):
                return s
        return None

    def _is_ready(self, s: int) -> bool:
        if s in self._ready:
            return True
        if self._cached(s):
            self._ready.add(s)
            return True
        return False

    def _work(self) -> None:
        while True:
            with self._cond:
                s = None
                while not self._closed and (s := self._next()) is None:
                    self._cond.wait()
                if self._closed:
                    return
                self._running.add(s)
            try:
                self._fetch(s)
                ok = True
            except Exception as e:  # a take() will meet (and raise) the same error itself
                ok = False
                self.errors.append(f"shard {s}: {type(e).__name__}: {e}")
            with self._cond:
                self._running.discard(s)
                if ok:
                    self._ready.add(s)
                    self.fetched += 1
                else:  # do not retry it in a loop: drop it from this plan
                    self._plan = [p for p in self._plan if p != s]
                    self._urgent = [p for p in self._urgent if p != s]
                self._cond.notify_all()

    def close(self) -> None:
        """Stop the workers (running downloads finish)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
