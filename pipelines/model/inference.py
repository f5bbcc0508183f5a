"""Scoring batch elements, bad texts isolated: the CPU signals in a plain DoFn
(:class:`ScoreSignals`), each model scorer through RunInference (:mod:`.handlers`).

The job's elements are *batches* of validated records (made by the reader, one part at a
time): ``{"part", "seq", "of", "records", "columns", "errors", ...}``. Each scoring step adds
its scorers' columns and leaves ``errors[i]`` (None, or why record ``i`` failed) for the next;
a record that failed once is not scored again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipelines.io.models import local_model_params
from pipelines.job.failfast import SCORERS

ScorerSpec = tuple[str, dict[str, Any]]
_LOG = logging.getLogger("gradum.scoring")
SCORER_CPU_SECONDS: dict[str, float] = {}  # this worker process's, over the job


class ScorerSet(list):
    """The scorers of one step in one worker process (a list that Beam's model sharing can
    weak-reference)."""


def _isolate(scorer: Any, texts: list[str], exc: Exception) -> list[tuple[dict | None, str | None]]:
    """``texts`` failed with ``exc`` as a whole: its reason if it is one text, else each half
    scored (and isolated) on its own: one bad text costs O(log n) extra calls."""
    if len(texts) == 1:
        cause = exc.__cause__ or exc
        return [(None, f"scorer failed: {type(cause).__name__}: {cause}"[:500])]
    mid = len(texts) // 2
    out = []
    for half in (texts[:mid], texts[mid:]):
        try:
            cols = scorer.score(half)
        except Exception as inner:  # noqa: BLE001 - isolated further
            out.extend(_isolate(scorer, half, inner))
            continue
        out.extend(({k: v[i] for k, v in cols.items()}, None) for i in range(len(half)))
    return out


def score_one(
    scorer: Any, texts: list[str], job: str = ""
) -> tuple[dict[str, np.ndarray], list[str | None]]:
    """Score ``texts`` with one scorer: ``(columns, errors)``. The batch is scored in one call;
    only when that fails is it bisected and the failed texts' entries left NaN. A scorer that
    has not succeeded yet in this process is first probed on one text
    (:mod:`pipelines.job.failfast`: a broken scorer stops the job)."""
    name = getattr(scorer, "name", type(scorer).__name__)
    try:
        columns = scorer.score(texts)
        SCORERS.ok(job, name)
        return columns, [None] * len(texts)
    except Exception as exc:  # noqa: BLE001 - isolated below
        if SCORERS.needs_probe(job, name):
            try:
                scorer.score(texts[:1])
            except Exception as probe:  # noqa: BLE001 - counted, maybe fatal
                SCORERS.probe_failed(job, name, probe)
        results = _isolate(scorer, texts, exc)
    good = next((s for s, _ in results if s is not None), None)
    if good is not None:
        SCORERS.ok(job, name)
    columns = {}
    for k, v in (good or {}).items():
        col = np.full((len(texts), *np.shape(v)), np.nan, dtype=np.float64)
        for i, (scores, _) in enumerate(results):
            if scores is not None:
                col[i] = scores[k]
        columns[k] = col
    return columns, [err for _, err in results]


def score_batch(
    scorer_set: Sequence[Any],
    batch: dict,
    cpu_seconds: dict[str, float] | None = None,
    job: str = "",
) -> dict:
    """A new batch element with ``scorer_set``'s columns added for the records not failed yet
    (NaN for the others) and ``errors`` updated. ``cpu_seconds`` accumulates each scorer's CPU
    time in this thread (where the job's time goes)."""
    records = batch["records"]
    errors = list(batch.get("errors") or [None] * len(records))
    live = [i for i, e in enumerate(errors) if e is None]
    columns = dict(batch.get("columns") or {})
    texts = [records[i]["text"] for i in live]
    for scorer in scorer_set:
        began = time.thread_time()
        if texts:
            cols, errs = score_one(scorer, texts, job)
        else:
            cols, errs = {}, []
        if cpu_seconds is not None:
            cpu_seconds[scorer.name] = (
                cpu_seconds.get(scorer.name, 0.0) + time.thread_time() - began
            )
        for c in getattr(scorer, "outputs", {}):
            dtype = np.float32 if c == "embedding" else np.float64
            values = np.asarray(cols[c]) if c in cols else None
            if values is not None and len(live) == len(records) == len(values):  # none failed
                columns[c] = values.astype(dtype, copy=False)
                continue
            shape = (len(records), *(values.shape[1:] if values is not None else ()))
            full = np.full(shape, np.nan, dtype=dtype)
            if values is not None and len(live):
                full[live] = values
            columns[c] = full
        for j, err in enumerate(errs):
            if err is not None and errors[live[j]] is None:
                errors[live[j]] = err
    return dict(batch, columns=columns, errors=errors)


def load_scorers(
    specs: Sequence[ScorerSpec],
    *,
    torch_threads: int | None = None,
    job_token: str = "",
    sampled: dict[str, tuple[int, float]] | None = None,
) -> ScorerSet:
    """The scorers of one step, built in this worker process; a model stored in a bucket is
    copied locally first; ``sampled`` scorers run on a sample only (:mod:`..proxy`)."""
    import scorers

    if torch_threads and any(n in ("lm", "embedding") for n, _ in specs):
        import torch

        # Several worker processes share the cores: one pool of threads each would
        # oversubscribe them (measured: 2 workers x 2 threads ran at half speed).
        torch.set_num_threads(torch_threads)

    from pipelines.model.proxy import SampledScorer

    out = ScorerSet()
    for name, params in specs:
        scorer = scorers.get(name, **local_model_params(params, job_token))
        if name in (sampled or {}):
            scorer = SampledScorer(scorer, *sampled[name])
        out.append(scorer)
    return out


def score_elements(batch: Sequence[dict], model: ScorerSet, job: str, failed=None) -> list[dict]:
    """Score each batch element (reused parts and empty batches pass through untouched)."""
    out = []
    for element in batch:
        if element.get("reused") is not None or not element["records"]:
            out.append(element)
            continue
        before = sum(e is not None for e in element.get("errors") or [])
        scored = score_batch(model, element, SCORER_CPU_SECONDS, job)
        runtime = {s.name: s.runtime() for s in model if hasattr(s, "runtime") and s.runtime()}
        if runtime:
            scored["runtime"] = {**(element.get("runtime") or {}), **runtime}
        if failed is not None:
            failed.inc(sum(e is not None for e in scored["errors"]) - before)
        out.append(scored)
    return out


class ScoreSignals(beam.DoFn):
    """The CPU signals of each batch element: a plain DoFn (these scorers load nothing, so
    RunInference, which imports torch in every worker, would only add start-up time)."""

    def __init__(self, specs: Sequence[ScorerSpec], *, job_token: str = "", sampled=None) -> None:
        self.specs = [(name, dict(params)) for name, params in specs]
        self.job_token, self.sampled = job_token, dict(sampled or {})
        self.failed = Metrics.counter("gradum", "scorer_dead_letter")

    def setup(self) -> None:
        self.model = load_scorers(self.specs, job_token=self.job_token, sampled=self.sampled)

    def process(self, element: dict):
        yield from score_elements([element], self.model, self.job_token, self.failed)


def scorer_cpu_line() -> str:
    """This worker's CPU seconds per scorer so far, for the log (one line per part)."""
    cpu = SCORER_CPU_SECONDS
    spent = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    return f"gradum worker {os.getpid()}: scorer CPU seconds so far: {spent or 'none'}"
