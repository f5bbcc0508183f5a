"""Scoring inside Beam's RunInference: one ModelHandler per model scorer, bad texts isolated.

The job's elements are *batches* of validated records (made by the reader, one part at a
time): ``{"part", "seq", "of", "records", "columns", "errors", ...}``. Each scoring step adds
its scorers' columns and leaves ``errors[i]`` (None, or why record ``i`` failed) for the next;
a record that failed once is not scored again. Steps: one :class:`ScorersHandler` for the
CPU signals together, one for the LM (perplexity, confidence, angle concentration from one
forward pass), one for the embedding model. RunInference loads each handler's model once per
worker process and shares it across the process's threads.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

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
            values = np.asarray(cols[c]) if c in cols else None
            shape = (len(records), *(values.shape[1:] if values is not None else ()))
            full = np.full(shape, np.nan, dtype=np.float32 if c == "embedding" else np.float64)
            if values is not None and len(live):
                full[live] = values
            columns[c] = full
        for j, err in enumerate(errs):
            if err is not None and errors[live[j]] is None:
                errors[live[j]] = err
    return dict(batch, columns=columns, errors=errors)


class ScorersHandler(ModelHandler[dict, dict, ScorerSet]):
    """A RunInference handler whose "model" is a few gradum scorers (one step of the job).

    Each example is a batch element; its output is the same element with the scorers'
    columns added. Reused parts (``--resume``) and empty batches pass through untouched.
    """

    def __init__(
        self,
        specs: Sequence[ScorerSpec],
        *,
        torch_threads: int | None = None,
        job_token: str = "",
        sampled: dict[str, tuple[int, float]] | None = None,
    ) -> None:
        self._sampled = dict(sampled or {})  # scorer name -> (seed, fraction): pipelines.proxy
        self._torch_threads = torch_threads
        self._job_token = job_token
        self._specs = [(name, dict(params)) for name, params in specs]
        self._failed = Metrics.counter("gradum", "scorer_dead_letter")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._specs]

    def load_model(self) -> ScorerSet:
        import scorers

        if self._torch_threads and any(n in ("lm", "embedding") for n, _ in self._specs):
            import torch

            # Several worker processes share the cores: one pool of threads each would
            # oversubscribe them (measured: 2 workers x 2 threads ran at half speed).
            torch.set_num_threads(self._torch_threads)

        from pipelines.model.proxy import SampledScorer

        out = ScorerSet()
        for name, params in self._specs:
            scorer = scorers.get(name, **local_model_params(params, self._job_token))
            if name in self._sampled:
                scorer = SampledScorer(scorer, *self._sampled[name])
            out.append(scorer)
        return out

    def run_inference(
        self, batch: Sequence[dict], model: ScorerSet, inference_args: dict | None = None
    ) -> Iterable[dict]:
        out = []
        for element in batch:
            if element.get("reused") is not None or not element["records"]:
                out.append(element)
                continue
            before = sum(e is not None for e in element.get("errors") or [])
            scored = score_batch(model, element, SCORER_CPU_SECONDS, self._job_token)
            self._failed.inc(sum(e is not None for e in scored["errors"]) - before)
            out.append(scored)
        return out

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(r["text"]) for element in batch for r in element["records"])

    def batch_elements_kwargs(self) -> dict[str, int]:
        # Elements are batches already (the reader makes them): one per call.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return False

    def get_metrics_namespace(self) -> str:
        return "gradum"


def scorer_cpu_line() -> str:
    """This worker's CPU seconds per scorer so far, for the log (one line per part)."""
    cpu = SCORER_CPU_SECONDS
    spent = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    return f"gradum worker {os.getpid()}: scorer CPU seconds so far: {spent or 'none'}"
