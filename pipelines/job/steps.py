"""The Beam transforms of the scoring job, each a small DoFn or function with one job."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipelines.console.progress import PROGRESS
from pipelines.io.formats import jsonable
from pipelines.io.records import make_record
from pipelines.model import clustering
from pipelines.stats.sketch import QuantileSketch


def dead_letter(stage: str, reason: str, source: str, position: int, payload: Any) -> dict:
    return {
        "stage": stage,
        "reason": reason,
        "source": source,
        "position": position,
        "payload": jsonable(payload),
    }


def record_dead_letter(stage: str, reason: str, record: dict) -> dict:
    """The dead letter of a validated record: its fields, text and id as the payload."""
    payload = dict(record["meta"], text=record["text"], id=record["id"])
    return dead_letter(stage, reason, record["source"], record["position"], payload)


class ReadFn(beam.DoFn):
    """A read unit -> batches of valid records (main output, lists of ``batch_size``), dead
    letters (tag ``dead``) and the number of input records it held (tag ``count``).

    Records travel as batches from here on: Beam's per-element cost is then paid once per
    batch, not once per record.
    """

    def __init__(
        self,
        text_field: str,
        id_field: str | None,
        max_text_bytes: int,
        batch_size: int,
        progress_dir: str | None = None,
    ) -> None:
        self.progress_dir = progress_dir  # see pipelines.console.progress
        self.text_field, self.id_field, self.max_text_bytes = text_field, id_field, max_text_bytes
        self.batch_size = batch_size
        self.read = Metrics.counter("gradum", "read")
        self.dead = Metrics.counter("gradum", "input_dead_letter")

    def process(self, unit: tuple):
        from pipelines.io.formats import read_unit

        PROGRESS.configure(self.progress_dir)
        batch: list[dict] = []
        n = 0
        for item in read_unit(unit):
            n += 1
            if item[0] == "dead":
                _, source, position, reason, payload = item
                self.dead.inc()
                PROGRESS.add(read=1, dead=1)
                yield beam.pvalue.TaggedOutput(
                    "dead", dead_letter("read", reason, source, position, payload)
                )
                continue
            _, source, position, payload = item
            record, reason = make_record(
                source,
                position,
                payload,
                text_field=self.text_field,
                id_field=self.id_field,
                max_text_bytes=self.max_text_bytes,
            )
            if record is None:
                self.dead.inc()
                PROGRESS.add(read=1, dead=1)
                yield beam.pvalue.TaggedOutput(
                    "dead", dead_letter("validate", reason, source, position, payload)
                )
                continue
            batch.append(record)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
            PROGRESS.add(read=1)
        if batch:
            yield batch
        PROGRESS.flush()
        self.read.inc(n)
        yield beam.pvalue.TaggedOutput("count", n)


def split_scored(result):
    """PredictionResult of a batch -> a scored batch ``{"records", "columns"}`` (main; the
    signal arrays, and ``embedding`` as a 2-D float32 array when scored) and a dead letter per
    record whose text could not be scored (tag ``dead``)."""
    columns, errors = result.inference
    ok = [i for i, e in enumerate(errors) if e is None]
    for i, e in enumerate(errors):
        if e is not None:
            record = result.example[i]
            yield beam.pvalue.TaggedOutput("dead", record_dead_letter("score", e, record))
    if not ok:
        return
    keep = None if len(ok) == len(errors) else np.asarray(ok)
    out = {}
    for k, v in columns.items():
        v = np.asarray(v, dtype=np.float32 if k == "embedding" else np.float64)
        out[k] = v if keep is None else v[keep]
    records = result.example if keep is None else [result.example[i] for i in ok]
    yield {"records": records, "columns": out}


def fit(sample: list, k: int, seed: int, sample_size: int) -> dict:
    """Spherical k-means on the ``sample_size`` sampled rows with the smallest keys."""
    kept = sorted(sample, key=lambda s: s[0])[:sample_size]
    centroids, info = clustering.fit_centroids([(i, e) for _, i, e in kept], k, seed=seed)
    return {"centroids": centroids, "info": info}


class SketchCombineFn(beam.CombineFn):
    """One :class:`QuantileSketch` per signal column over scored batches (or any dict with the
    value arrays under ``"columns"``), order-free."""

    def __init__(self, columns: list[str], alpha: float) -> None:
        self.columns, self.alpha = list(columns), alpha

    def create_accumulator(self):
        return {c: QuantileSketch(self.alpha) for c in self.columns}

    def add_input(self, acc, batch):
        for c in self.columns:
            acc[c].add(batch["columns"][c])
        return acc

    def merge_accumulators(self, accs):
        accs = list(accs)
        out = accs[0]
        for acc in accs[1:]:
            for c in self.columns:
                out[c].merge(acc[c])
        return out

    def extract_output(self, acc):
        return acc
