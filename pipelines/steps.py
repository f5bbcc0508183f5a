"""The Beam transforms of the scoring job, each a small DoFn or function with one job."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipelines import clustering, difficulty
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


class ValidateFn(beam.DoFn):
    """Raw items -> records (main output) or dead letters (tag ``dead``)."""

    def __init__(self, text_field: str, id_field: str | None, max_text_bytes: int) -> None:
        self.text_field, self.id_field, self.max_text_bytes = text_field, id_field, max_text_bytes
        self.read = Metrics.counter("gradum", "read")
        self.dead = Metrics.counter("gradum", "input_dead_letter")

    def process(self, item: tuple):
        self.read.inc()
        if item[0] == "dead":
            _, source, position, reason, payload = item
            self.dead.inc()
            yield beam.pvalue.TaggedOutput(
                "dead", dead_letter("read", reason, source, position, payload)
            )
            return
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
            yield beam.pvalue.TaggedOutput(
                "dead", dead_letter("validate", reason, source, position, payload)
            )
        else:
            yield record


def split_scored(result):
    """PredictionResult -> record with its scores (main) or a dead letter (tag ``dead``)."""
    record, (scores, error) = result.example, result.inference
    if error is not None:
        payload = dict(record["meta"], text=record["text"], id=record["id"])
        yield beam.pvalue.TaggedOutput(
            "dead", dead_letter("score", error, record["source"], record["position"], payload)
        )
        return
    out = dict(record)
    embedding = scores.pop("embedding", None)
    out["scores"] = {k: float(v) for k, v in scores.items()}
    if embedding is not None:
        out["embedding"] = np.asarray(embedding, dtype=np.float32)
    yield out


def sample_entry(record: dict, seed: int) -> tuple[str, str, np.ndarray]:
    return (clustering.sample_key(seed, record["id"]), record["id"], record["embedding"])


def fit(sample: list, k: int, seed: int) -> dict:
    centroids, info = clustering.fit_centroids([(i, e) for _, i, e in sample], k, seed=seed)
    return {"centroids": centroids, "info": info}


def assign_cluster(record: dict, model: dict) -> dict:
    cluster, dist = clustering.assign(record["embedding"][None, :], model["centroids"])
    out = dict(record)
    out["cluster"] = int(cluster[0])
    out["scores"] = dict(record["scores"], centroid_distance=float(dist[0]))
    return out


class SketchCombineFn(beam.CombineFn):
    """One :class:`QuantileSketch` per signal column, merged order-free."""

    def __init__(self, columns: list[str], alpha: float) -> None:
        self.columns, self.alpha = list(columns), alpha

    def create_accumulator(self):
        return {c: QuantileSketch(self.alpha) for c in self.columns}

    def add_input(self, acc, record):
        for c in self.columns:
            acc[c].add(np.array([record["scores"].get(c, math.nan)]))
        return acc

    def add_inputs(self, acc, records):
        records = list(records)
        for c in self.columns:
            acc[c].add(np.array([r["scores"].get(c, math.nan) for r in records]))
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
    record: dict, sketches: dict, directions: dict, weights: dict, n_buckets: int
) -> dict:
    ranks = {c: sketches[c].rank(np.array([record["scores"].get(c, math.nan)])) for c in weights}
    d = difficulty.combine(ranks, directions, weights)
    out = dict(record)
    out["difficulty"] = float(d[0])
    out["bucket"] = int(difficulty.buckets(d, n_buckets)[0])
    return out


def stable_hash(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


def key_by_shard(record: dict, n_rows: int, rows_per_shard: int) -> tuple[int, dict]:
    n_shards = max(1, math.ceil(n_rows / rows_per_shard))
    return stable_hash(record["id"]) % n_shards, record
