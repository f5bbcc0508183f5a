"""Scoring inside Beam's RunInference: one scorer set per worker process, bad texts isolated."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

ScorerSpec = tuple[str, dict[str, Any]]


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
        if len(texts) == 1:
            cause = exc.__cause__ or exc
            return [(None, f"scorer failed: {type(cause).__name__}: {cause}"[:500])]
        mid = len(texts) // 2
        return score_isolating(scorer_set, texts[:mid]) + score_isolating(scorer_set, texts[mid:])
    return [({k: v[i] for k, v in columns.items()}, None) for i in range(len(texts))]


class _Progress:
    """Per-process progress line on stderr every ``every`` seconds (local runs)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.start = self.last = time.monotonic()
        self.scored = self.failed = 0

    def tick(self, scored: int, failed: int) -> None:
        self.scored += scored
        self.failed += failed
        now = time.monotonic()
        if self.every > 0 and now - self.last >= self.every:
            self.last = now
            rate = self.scored / max(now - self.start, 1e-9)
            print(
                f"[gradum worker {os.getpid()}] scored {self.scored:,} "
                f"dead-lettered {self.failed:,} ({rate:,.0f} docs/s)",
                file=sys.stderr,
                flush=True,
            )


class ScorerModelHandler(ModelHandler[dict, dict, list]):
    """A RunInference handler whose "model" is the list of gradum scorers.

    RunInference loads it once per worker process and batches records for it; the model
    scorers sort each batch by token length themselves. Output: the record with a
    ``scores`` dict, or with ``error`` set when its text could not be scored.
    """

    def __init__(
        self,
        specs: Sequence[ScorerSpec],
        *,
        min_batch_size: int = 1,
        max_batch_size: int = 256,
        progress_every: float = 10.0,
    ) -> None:
        self._specs = [(name, dict(params)) for name, params in specs]
        self._batch = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
        self._progress_every = progress_every
        self._progress: _Progress | None = None
        self._scored = Metrics.counter("gradum", "scored")
        self._failed = Metrics.counter("gradum", "scorer_dead_letter")

    def load_model(self) -> list:
        import scorers

        return ScorerSet(scorers.get(name, **params) for name, params in self._specs)

    def run_inference(
        self, batch: Sequence[dict], model: list, inference_args: dict | None = None
    ) -> Iterable[PredictionResult]:
        if self._progress is None:
            self._progress = _Progress(self._progress_every)
        results = score_isolating(model, [r["text"] for r in batch])
        failed = sum(1 for _, err in results if err is not None)
        self._scored.inc(len(batch) - failed)
        self._failed.inc(failed)
        self._progress.tick(len(batch) - failed, failed)
        return [
            PredictionResult(example=rec, inference=res)
            for rec, res in zip(batch, results, strict=True)
        ]

    def batch_elements_kwargs(self) -> dict[str, int]:
        return dict(self._batch)

    def share_model_across_processes(self) -> bool:
        return False

    def get_metrics_namespace(self) -> str:
        return "gradum"
