"""Live progress of a local run: one line per worker process on stderr every few seconds.

Beam metrics counters (namespace ``gradum``: ``read``, ``input_dead_letter``, ``scored``,
``scorer_dead_letter``, ``written``) carry the same numbers on remote runners, where they show
in the runner's UI (the Dataflow job page, the Flink dashboard).
"""

from __future__ import annotations

import os
import sys
import time


class Progress:
    """Counters of this process, printed at most every ``every`` seconds (0: never)."""

    def __init__(self) -> None:
        self.every = 0.0
        self.start = self.last = time.monotonic()
        self.read = self.scored = self.dead = 0

    def add(self, *, read: int = 0, scored: int = 0, dead: int = 0) -> None:
        self.read += read
        self.scored += scored
        self.dead += dead
        now = time.monotonic()
        if self.every > 0 and now - self.last >= self.every:
            self.last = now
            rate = self.scored / max(now - self.start, 1e-9)
            print(
                f"[gradum worker {os.getpid()}] read {self.read:,}  scored {self.scored:,}  "
                f"dead-lettered {self.dead:,}  ({rate:,.0f} docs/s)",
                file=sys.stderr,
                flush=True,
            )


PROGRESS = Progress()
