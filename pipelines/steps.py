"""The Beam transforms of the scoring job, each a small DoFn or function with one job."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipelines import clustering, difficulty
from pipelines.progress import PROGRESS
from pipelines.readers import jsonable
from pipelines.records import make_record
from pipelines.sketch import QuantileSketch


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
        progress_every: float = 0.0,
    ) -> None:
        self.progress_every = progress_every
        self.text_field, self.id_field, self.max_text_bytes = text_field, id_field, max_text_bytes
        self.batch_size = batch_size
        self.read = Metrics.counter("gradum", "read")
        self.dead = Metrics.counter("gradum", "input_dead_letter")

    def process(self, unit: tuple):
        from pipelines.readers import read_unit

        PROGRESS.every = self.progress_every
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
        self.read.inc(n)
        yield beam.pvalue.TaggedOutput("count", n)


def split_scored(result):
    """PredictionResult of a batch -> the scored records (main, one list) and a dead letter per
    record whose text could not be scored (tag ``dead``)."""
    scored = []
    for record, (scores, error) in zip(result.example, result.inference, strict=True):
        if error is not None:
            yield beam.pvalue.TaggedOutput("dead", record_dead_letter("score", error, record))
            continue
        out = dict(record)
        embedding = scores.pop("embedding", None)
        out["scores"] = {k: float(v) for k, v in scores.items()}
        if embedding is not None:
            out["embedding"] = np.asarray(embedding, dtype=np.float32)
        scored.append(out)
    if scored:
        yield scored


def sample_entries(batch: list[dict], seed: int, n_rows: int, sample_size: int):
    """The records of a batch that fall in the k-means sample: those whose sha1(seed, id)
    lies below ``sample_size / n_rows`` of the hash range. Deterministic and uniform."""
    threshold = min(1.0, sample_size / max(n_rows, 1)) * 16**12
    for r in batch:
        key = clustering.sample_key(seed, r["id"])
        if int(key[:12], 16) < threshold:
            yield (key, r["id"], r["embedding"])


def fit(sample: list, k: int, seed: int) -> dict:
    centroids, info = clustering.fit_centroids([(i, e) for _, i, e in sample], k, seed=seed)
    return {"centroids": centroids, "info": info}


def assign_clusters(batch: list[dict], model: dict) -> list[dict]:
    """Nearest centroid and cosine distance for a batch of records."""
    if not batch:
        return batch
    cluster, dist = clustering.assign(np.stack([r["embedding"] for r in batch]), model["centroids"])
    out = []
    for r, c, d in zip(batch, cluster.tolist(), dist.tolist(), strict=True):
        r = dict(r, cluster=c)
        r["scores"] = dict(r["scores"], centroid_distance=d)
        out.append(r)
    return out


def _column(batch: list[dict], name: str) -> np.ndarray:
    return np.array([r["scores"].get(name, math.nan) for r in batch], dtype=np.float64)


class SketchCombineFn(beam.CombineFn):
    """One :class:`QuantileSketch` per signal column over batches of records, order-free."""

    def __init__(self, columns: list[str], alpha: float) -> None:
        self.columns, self.alpha = list(columns), alpha

    def create_accumulator(self):
        return {c: QuantileSketch(self.alpha) for c in self.columns}

    def add_input(self, acc, batch):
        for c in self.columns:
            acc[c].add(_column(batch, c))
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


def with_difficulty(
    batch: list[dict],
    sketches: dict,
    directions: dict,
    weights: dict,
    n_buckets: int,
    n_rows: int,
    rows_per_shard: int,
):
    """Difficulty and bucket for a batch; yields ``(shard_index, record)``."""
    if not batch:
        return
    ranks = {c: sketches[c].rank(_column(batch, c)) for c in weights}
    d = difficulty.combine(ranks, directions, weights)
    b = difficulty.buckets(d, n_buckets)
    n_shards = max(1, math.ceil(n_rows / rows_per_shard))
    by_shard: dict[int, list[dict]] = {}
    for r, dv, bv in zip(batch, d.tolist(), b.tolist(), strict=True):
        by_shard.setdefault(stable_hash(r["id"]) % n_shards, []).append(
            dict(r, difficulty=dv, bucket=bv)
        )
    yield from by_shard.items()


def stable_hash(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)
