"""The model scorers inside Beam's RunInference: one ModelHandler per model (the LM gives
perplexity, confidence and angle concentration from one forward pass; the embedding model
its vectors). RunInference loads a handler's model once per worker process and shares it
across the process's threads. Importing this module imports ``apache_beam.ml`` (and torch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from pipelines.model.inference import ScorerSet, ScorerSpec, load_scorers, score_elements


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
        return load_scorers(
            self._specs,
            torch_threads=self._torch_threads,
            job_token=self._job_token,
            sampled=self._sampled,
        )

    def run_inference(
        self, batch: Sequence[dict], model: ScorerSet, inference_args: dict | None = None
    ) -> Iterable[dict]:
        return score_elements(batch, model, self._job_token, self._failed)

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(r["text"]) for element in batch for r in element["records"])

    def batch_elements_kwargs(self) -> dict[str, int]:
        # Elements are batches already (the reader makes them): one per call.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return False

    def get_metrics_namespace(self) -> str:
        return "gradum"
