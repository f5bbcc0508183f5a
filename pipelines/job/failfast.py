"""Stop a job early when it cannot succeed: a blown dead-letter budget, a scorer that fails on
everything. Both decide from what this worker process has seen, so they need no coordination.

**Budget** (``--max-dead-letter-fraction f``). The job fails at the commit when more than ``f``
of its input was rejected; a worker stops it long before when, among what it has read,

1. its rejections alone already exceed ``f`` times the planned total (certain when the total
   is exact; the launcher's estimate is doubled first when it is not), or
2. it has read at least ``MIN_READ`` records and the lower end of the Wilson score interval
   (z = ``Z``, one-sided 99.95 %) of its rejected share is over ``f``.

Rule 2 assumes a worker's records are a fair sample of the corpus; a corpus whose bad records
cluster in a few files can trip it on the worker that reads them. The commit's exact check is
the final word in every other case.

**Scorers**. A batch that fails is bisected to isolate the bad texts. A scorer that has never
succeeded in this process and fails on a batch is first tried on that batch's first text
alone; when that fails too, on ``MAX_PROBE_FAILURES`` batches in a row, the scorer is broken
(a missing model file, a CUDA error), not the data: the job stops with the scorer's error
instead of dead-lettering every record one at a time.
"""

from __future__ import annotations

import math
import threading

MIN_READ = 10_000
Z = 3.29
MAX_PROBE_FAILURES = 3


class DeadLetterFractionError(RuntimeError):
    """Too many inputs were rejected: the job fails and writes no manifest."""


class ScorerBrokenError(RuntimeError):
    """A scorer fails on whole batches and on single texts alike: the job stops."""


def wilson_lower(bad: int, n: int, z: float = Z) -> float:
    """Lower end of the Wilson score interval of a share ``bad / n``."""
    if n <= 0:
        return 0.0
    p = bad / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


class Budget:
    """This process's count of records read and rejected in one job, checked against the
    budget. A worker process may serve several jobs (tests, the in-memory runner): counts
    start again when the job changes."""

    def __init__(self) -> None:
        self.read = self.dead = 0
        self.fraction: float | None = None
        self.total = 0
        self.exact = True
        self.job = ""
        self._lock = threading.Lock()

    def configure(self, job: str, fraction: float, total: int, exact: bool) -> None:
        with self._lock:
            if job != self.job:
                self.job, self.read, self.dead = job, 0, 0
            self.fraction, self.total, self.exact = fraction, int(total), bool(exact)

    def add(self, *, read: int = 0, dead: int = 0) -> None:
        with self._lock:
            self.read += read
            self.dead += dead
            read_now, dead_now = self.read, self.dead
        self.check(read_now, dead_now)

    def check(self, read: int, dead: int) -> None:
        f = self.fraction
        if f is None or f >= 1.0 or dead == 0:
            return
        allowed = f * (self.total if self.exact else 2 * self.total)
        over = self.total and dead > allowed
        if over or (read >= MIN_READ and wilson_lower(dead, read) > f):
            SCORERS.raise_if_failing(self.job)  # the cause, when a scorer has never worked
        if over:
            planned = f"{self.total:,}" if self.exact else f"about {self.total:,} (doubled)"
            raise DeadLetterFractionError(
                f"{dead:,} records were dead-lettered by one worker alone, over "
                f"--max-dead-letter-fraction={f:g} of the {planned} planned; the job stopped "
                "early and wrote no manifest"
            )
        if read >= MIN_READ and wilson_lower(dead, read) > f:
            raise DeadLetterFractionError(
                f"{dead:,} of the first {read:,} records one worker read were dead-lettered "
                f"({dead / read:.1%}), clearly over --max-dead-letter-fraction={f:g}; the "
                "job stopped early and wrote no manifest"
            )


class ScorerWatch:
    """Whether each scorer has succeeded yet in this process and job (keys are ``(job,
    scorer)``), and its failed probes."""

    def __init__(self) -> None:
        self.succeeded: set[tuple[str, str]] = set()
        self.probe_failures: dict[tuple[str, str], int] = {}
        self.last_error: dict[tuple[str, str], BaseException] = {}
        self._lock = threading.Lock()

    def ok(self, job: str, name: str) -> None:
        with self._lock:
            self.succeeded.add((job, name))

    def needs_probe(self, job: str, name: str) -> bool:
        return (job, name) not in self.succeeded

    def probe_failed(self, job: str, name: str, exc: BaseException) -> None:
        with self._lock:
            n = self.probe_failures[(job, name)] = self.probe_failures.get((job, name), 0) + 1
            self.last_error[(job, name)] = exc
        if n >= MAX_PROBE_FAILURES:
            raise _broken(name, n, exc)

    def raise_if_failing(self, job: str) -> None:
        """Raise :class:`ScorerBrokenError` for a scorer of ``job`` that has failed its probes
        and never succeeded: the dead-letter budget blew because of it, not of the data."""
        with self._lock:
            failing = [
                (name, n, self.last_error[(j, name)])
                for (j, name), n in self.probe_failures.items()
                if j == job and (j, name) not in self.succeeded
            ]
        if failing:
            raise _broken(*failing[0])


def _broken(name: str, n: int, exc: BaseException) -> ScorerBrokenError:
    err = ScorerBrokenError(
        f"scorer {name!r} failed on each of its first {n} batches and on their first "
        f"text alone: {type(exc).__name__}: {exc}"[:600]
    )
    err.__cause__ = exc
    return err


BUDGET = Budget()
SCORERS = ScorerWatch()
