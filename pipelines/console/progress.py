"""Live progress of a job: ONE display for the whole job, summed over the worker processes.

Worker side: each process counts what it read, scored and dead-lettered (:data:`PROGRESS`) and,
when the launcher gave a progress directory, rewrites ``DIR/<pid>.json`` (a few dozen bytes,
atomically) at most every half second and after every scored batch.

Launcher side: :class:`ProgressDisplay` polls that directory, sums the files and draws one tqdm
bar (records done of the planned total, docs/s, ETA; "ETA unknown" without a total). The
directory lives in the launcher's temporary directory, so only workers on this machine (the
DirectRunner's subprocesses or threads, a LOOPBACK portable runner) can feed it; remote runners
(Dataflow, a Flink or Spark cluster) get no bar and show the Beam counters of namespace
``gradum`` (``read``, ``input_dead_letter``, ``scored``, ``scorer_dead_letter``, ``written``)
in their own UI.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

WRITE_EVERY_S = 0.5
POLL_EVERY_S = 0.5


class Progress:
    """The counters of this process, written to ``directory`` when one is set."""

    def __init__(self) -> None:
        self.directory: str | None = None
        self.read = self.scored = self.dead = self.shards = self.reused = 0
        self._last_write = 0.0
        self._lock = threading.Lock()

    def configure(self, directory: str | None) -> None:
        """Write to ``directory`` (None: count only). A directory that does not exist on this
        machine (a remote worker given the launcher's path) means: count only."""
        self.directory = directory if directory and os.path.isdir(directory) else None

    def add(
        self, *, read: int = 0, scored: int = 0, dead: int = 0, shards: int = 0, reused: int = 0
    ) -> None:
        """Count records read, scored, dead-lettered, reused from a killed run (``--resume``:
        they count as done) and shards begun."""
        with self._lock:
            self.reused += reused
            self.read += read
            self.scored += scored
            self.dead += dead
            self.shards += shards
        if self.directory and time.monotonic() - self._last_write >= WRITE_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Rewrite this process's file now (never raises: progress must not fail a job)."""
        if not self.directory:
            return
        self._last_write = time.monotonic()
        with self._lock:
            data = {"read": self.read, "scored": self.scored, "dead": self.dead}
            data["shards"], data["reused"] = self.shards, self.reused
        path = os.path.join(self.directory, f"{os.getpid()}.json")
        tmp = f"{path}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except OSError:
            pass


PROGRESS = Progress()


@dataclass
class Totals:
    """The job's counters summed over its worker processes."""

    read: int = 0
    scored: int = 0
    dead: int = 0
    workers: int = 0
    shards: int = 0  # shards whose building has begun (scoring is over by then)
    reused: int = 0  # records of parts a resumed run did not score again

    @property
    def done(self) -> int:
        """Records finished: scored, dead-lettered (at reading or scoring) or reused."""
        return self.scored + self.dead + self.reused


def sum_records(records: list[dict[str, Any]]) -> Totals:
    """Sum per-worker progress records (``{"read", "scored", "dead", "shards"}``)."""
    out = Totals()
    for r in records:
        out.read += int(r.get("read", 0))
        out.scored += int(r.get("scored", 0))
        out.dead += int(r.get("dead", 0))
        out.shards += int(r.get("shards", 0))
        out.reused += int(r.get("reused", 0))
        out.workers += 1
    return out


def read_totals(directory: str) -> Totals:
    """Sum the progress files in ``directory`` (files being replaced are skipped this time)."""
    records = []
    try:
        names = os.listdir(directory)
    except OSError:
        return Totals()
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                records.append(json.load(f))
        except (OSError, ValueError):
            continue
    return sum_records(records)


def eta_seconds(done: int, total: int | None, elapsed: float) -> float | None:
    """Seconds left at the rate so far; None without a total, before any progress, or once
    the count has passed an estimated total."""
    if not total or done <= 0 or elapsed <= 0 or done > total:
        return None
    return (total - done) * elapsed / done


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA unknown"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"ETA {h:d}:{m:02d}:{s:02d}" if h else f"ETA {m:02d}:{s:02d}"


def status_line(t: Totals, total: int | None, elapsed: float, final: bool = False) -> str:
    """The bar's text after the counts: rate and ETA first (a narrow terminal cuts the end);
    ``final``: no ETA."""
    rate = t.done / elapsed if elapsed > 0 else 0.0
    eta = eta_seconds(t.done, total, elapsed)
    eta_text = "ETA --:--" if eta is None and total and t.done <= 0 else format_eta(eta)
    eta_text = "" if final else f", {eta_text}"
    return (
        f"{rate:,.1f} docs/s{eta_text}] scored {t.scored:,}, dead-lettered {t.dead:,}, "
        f"read {t.read:,}, "
        + (f"reused {t.reused:,}, " if t.reused else "")
        + f"workers {t.workers}"
    )


def phase(t: Totals, total: int | None, exact: bool = True) -> str:
    """The bar's label: ``starting`` until a record is done (workers starting, models loading
    or being exported), ``scoring``, then ``writing`` once a shard is being built or, when the
    total is ``exact`` (not estimated from file sizes), every planned record is done."""
    if t.shards > 0 or (exact and total and t.done >= total):
        return "writing"
    return "scoring" if t.done > 0 else "starting"


def shown_total(t: Totals, total: int | None, exact: bool = True) -> int | None:
    """The total the bar shows. The planned one while it holds; past an estimated total while
    scoring, None (a count and its rate, no percentage: the true total is not known yet); once
    writing, the count done when the plan was an estimate, a guess or short: every record is
    scored before a shard is built, so that count is the true total."""
    if phase(t, total, exact) == "writing" and not (exact and total and t.done <= total):
        return t.done or None
    if total and t.done > total:
        return None
    return total


def plan_total(plan: Any) -> int | None:
    """The records the launcher expects (exact from metadata, or estimated from file sizes);
    None when it has no basis (a streamed Hub dataset)."""
    if not plan.rows or plan.streamed:
        return None
    return int(plan.rows)


def _columns(stream: TextIO) -> int:
    """The terminal's width (100 when unknown or reported as 0, as in a bare pty)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 100
    except (AttributeError, OSError, ValueError):
        return 100


WITH_TOTAL = "{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} [{elapsed}{postfix}"
COUNT_ONLY = "{desc} {n_fmt} [{elapsed}{postfix}"


class ProgressDisplay:
    """One tqdm bar on ``stream`` fed from ``directory`` by a polling thread; its last line
    (``done``, or where a failed job stopped) is drawn once, when the bar closes."""

    def __init__(
        self, directory: str, total: int | None, stream: TextIO, exact: bool = True
    ) -> None:
        self.directory, self.total, self.stream = directory, total, stream
        self.exact = exact  # the total is known, not estimated from file sizes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gradum-progress", daemon=True)
        self._bar: Any = None
        self._start = time.monotonic()
        self._tty = False
        self._last_print = 0.0
        self._last_done, self._last_change = 0, self._start

    def __enter__(self) -> ProgressDisplay:
        from tqdm import tqdm

        tty = self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        empty = Totals()
        self._bar = tqdm(
            total=self.total,
            desc=phase(empty, self.total, self.exact),
            postfix=status_line(empty, self.total, 0.0),
            unit=" docs",
            file=self.stream,
            ncols=_columns(self.stream) if tty else None,
            mininterval=POLL_EVERY_S if tty else 15.0,
            bar_format=WITH_TOTAL if self.total else COUNT_ONLY,
        )  # draws the first line
        self._last_print = time.monotonic()
        self._thread.start()
        return self

    def _apply(self, t: Totals, final: bool = False) -> None:
        """Set the bar to ``t`` without drawing it."""
        bar, now = self._bar, time.monotonic()
        if t.done != self._last_done:
            self._last_done, self._last_change = t.done, now
        # Done, the count is the total, whatever the plan said.
        total = (t.done or None) if final else shown_total(t, self.total, self.exact)
        bar.total, bar.bar_format = total, WITH_TOTAL if total else COUNT_ONLY
        bar.set_description_str("done" if final else phase(t, self.total, self.exact), False)
        # The rate over the time records were coming in (it does not sag while shards are written).
        elapsed = self._last_change - self._start
        bar.set_postfix_str(status_line(t, total, elapsed, final), refresh=False)

    def _update(self, force: bool = False) -> None:
        t = read_totals(self.directory)
        self._apply(t)
        bar, now = self._bar, time.monotonic()
        drawn = bool(bar.update(t.done - bar.n)) if t.done > bar.n else False
        if drawn:
            self._last_print = now
        elif force or self._tty or now - self._last_print >= 15.0:
            bar.refresh()
            self._last_print = now  # not a terminal (a log, CI): a line every 15 s at most

    def _run(self) -> None:
        while not self._stop.wait(POLL_EVERY_S):
            try:
                self._update()
            except Exception:  # noqa: BLE001 - a display error must not fail the job
                pass

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            t = read_totals(self.directory)
            self._apply(t, final=exc_type is None)  # failed: where it stopped
            self._bar.n = t.done
        finally:
            self._bar.close()  # draws the last line, once
