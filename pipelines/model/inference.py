"""Scoring inside Beam's RunInference: one scorer set per worker process, bad texts isolated."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines.io.models import local_model_params

ScorerSpec = tuple[str, dict[str, Any]]
_LOG = logging.getLogger("gradum.scoring")
_SCORER_CPU_SECONDS: dict[str, float] = {}  # this worker process's, over the job


class ScorerSet(list):
    """The scorers of one worker process (a list that Beam's model sharing can weak-reference)."""


def score_isolating(
    scorer_set: list[Any], texts: list[str]
) -> list[tuple[dict | None, str | None]]:
    """Score ``texts`` with every scorer; a failure splits the batch in halves until only
    the failing texts remain, so one bad text costs O(log n) extra calls and the rest of
    its batch is still scored. Returns ``(scores, None)`` or ``(None, reason)`` per text."""
    try:
        columns: dict[str, np.ndarray] = {}
        for scorer in scorer_set:
            columns.update(scorer.score(texts))
    except Exception as exc:  # noqa: BLE001 - any scorer failure is isolated, then reported
        return _bisect(scorer_set, texts, exc)
    return [({k: v[i] for k, v in columns.items()}, None) for i in range(len(texts))]


def _bisect(
    scorer_set: list[Any], texts: list[str], exc: Exception
) -> list[tuple[dict | None, str | None]]:
    """``texts`` failed with ``exc`` as a whole: its reason if it is one text, else each half
    scored (and isolated) on its own."""
    if len(texts) == 1:
        cause = exc.__cause__ or exc
        return [(None, f"scorer failed: {type(cause).__name__}: {cause}"[:500])]
    mid = len(texts) // 2
    return score_isolating(scorer_set, texts[:mid]) + score_isolating(scorer_set, texts[mid:])


def score_batch(
    scorer_set: list[Any], texts: list[str], cpu_seconds: dict[str, float] | None = None
) -> tuple[dict[str, np.ndarray], list[str | None]]:
    """Score ``texts`` column-wise: ``(columns, errors)``, one error (or None) per text. The
    whole batch is scored in one call per scorer; only when that fails is it bisected
    (:func:`score_isolating`, without scoring the whole batch again) and the failed texts'
    entries left NaN. ``cpu_seconds`` (scorer name -> seconds) accumulates the CPU time of this
    thread spent in each scorer (where the job's time goes; torch runs in the calling thread
    with one thread per worker process)."""
    try:
        columns: dict[str, np.ndarray] = {}
        for scorer in scorer_set:
            began = time.thread_time()
            columns.update(scorer.score(texts))
            if cpu_seconds is not None:
                name = getattr(scorer, "name", type(scorer).__name__)
                cpu_seconds[name] = cpu_seconds.get(name, 0.0) + time.thread_time() - began
        return columns, [None] * len(texts)
    except Exception as exc:  # noqa: BLE001 - isolated below
        results = _bisect(scorer_set, texts, exc)
    good = next((s for s, _ in results if s is not None), None)
    columns = {}
    for k, v in (good or {}).items():
        shape = np.shape(v)
        col = np.full((len(texts), *shape), np.nan, dtype=np.float64)
        for i, (scores, _) in enumerate(results):
            if scores is not None:
                col[i] = scores[k]
        columns[k] = col
    return columns, [err for _, err in results]


class ScorerModelHandler(ModelHandler[list, list, list]):
    """A RunInference handler whose "model" is the list of gradum scorers.

    RunInference loads it once per worker process. Each example is already a batch of
    records (made by the reader), so Beam's per-element cost is paid per batch; the model
    scorers sort a batch by token length themselves. The inference of a batch is
    ``(columns, errors)``: one array per output column and one error (or None) per record.
    """

    def __init__(
        self,
        specs: Sequence[ScorerSpec],
        *,
        progress_dir: str | None = None,
        torch_threads: int | None = None,
        job_token: str = "",
        sampled: dict[str, tuple[int, float]] | None = None,
    ) -> None:
        self._sampled = dict(
            sampled or {}
        )  # scorer name -> (seed, fraction): see pipelines.model.proxy
        self._torch_threads = torch_threads
        self._job_token = job_token
        self._specs = [(name, dict(params)) for name, params in specs]
        # Examples arrive as batches already (the reader makes them): one per call.
        self._batch = {"min_batch_size": 1, "max_batch_size": 1}
        self._progress_dir = progress_dir  # see pipelines.console.progress
        self._scored = Metrics.counter("gradum", "scored")
        self._failed = Metrics.counter("gradum", "scorer_dead_letter")

    def load_model(self) -> list:
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
        self, batch: Sequence[list], model: list, inference_args: dict | None = None
    ) -> Iterable[PredictionResult]:
        from pipelines.console.progress import PROGRESS

        PROGRESS.configure(self._progress_dir)
        out = []
        cpu = _SCORER_CPU_SECONDS
        for records in batch:
            results = score_batch(model, [r["text"] for r in records], cpu)
            failed = sum(1 for err in results[1] if err is not None)
            self._scored.inc(len(records) - failed)
            self._failed.inc(failed)
            PROGRESS.add(scored=len(records) - failed, dead=failed)
            out.append(PredictionResult(example=records, inference=results))
        PROGRESS.flush()
        # In the job's log: where this worker's scoring time went so far.
        _LOG.info(
            "gradum worker %d: scorer CPU seconds so far: %s",
            os.getpid(),
            ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])),
        )
        return out

    def get_num_bytes(self, batch: Sequence[list]) -> int:
        return sum(len(r["text"]) for records in batch for r in records)

    def batch_elements_kwargs(self) -> dict[str, int]:
        return dict(self._batch)

    def share_model_across_processes(self) -> bool:
        return False

    def get_metrics_namespace(self) -> str:
        return "gradum"
