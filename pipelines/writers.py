"""Write shards and dead letters from Beam workers, then the manifest (the commit point)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines.schema import convert_meta, meta_column, row_schema
from pipelines.steps import record_dead_letter


class WriteShardFn(beam.DoFn):
    """``(shard_index, records)`` -> one Arrow shard, rows sorted by id; duplicate ids are
    dead-lettered (tag ``dead``). Yields the shard's ``{path, rows, bytes, sha256}``."""

    def __init__(
        self, out_dir: str, signal_columns: list[str], *, clusters: bool, embedding_dim: int | None
    ) -> None:
        self.out_dir, self.signal_columns = out_dir, list(signal_columns)
        self.clusters, self.embedding_dim = clusters, embedding_dim
        self.written = Metrics.counter("gradum", "written")

    def process(self, element, meta_types: dict[str, str]):
        from shards import ShardWriter

        index, groups = element
        records = sorted(
            (r for group in groups for r in group),
            key=lambda r: (r["id"], r["source"], r["position"]),
        )
        unique, seen = [], None
        for r in records:
            if r["id"] == seen:
                reason = f"duplicate id {r['id']!r}"
                yield beam.pvalue.TaggedOutput("dead", record_dead_letter("write", reason, r))
                continue
            seen = r["id"]
            unique.append(r)
        schema = row_schema(
            meta_types,
            self.signal_columns,
            clusters=self.clusters,
            embedding_dim=self.embedding_dim,
        )
        names = set(self.signal_columns)
        cols: dict[str, Any] = {
            "id": [r["id"] for r in unique],
            "text": [r["text"] for r in unique],
            "source": [r["source"] for r in unique],
        }
        for key, kind in meta_types.items():
            cols[meta_column(key, names)] = [convert_meta(r["meta"].get(key), kind) for r in unique]
        for c in self.signal_columns:
            cols[c] = np.array([r["scores"].get(c, math.nan) for r in unique], dtype=np.float32)
        if self.embedding_dim:
            flat = np.concatenate([r["embedding"] for r in unique]) if unique else np.zeros(0)
            cols["embedding"] = pa.FixedSizeListArray.from_arrays(
                pa.array(flat.astype(np.float32)), self.embedding_dim
            )
        if self.clusters:
            cols["cluster"] = np.array([r["cluster"] for r in unique], dtype=np.int32)
        cols["difficulty"] = np.array([r["difficulty"] for r in unique], dtype=np.float32)
        cols["bucket"] = np.array([r["bucket"] for r in unique], dtype=np.int16)
        table = pa.table({f.name: cols[f.name] for f in schema}, schema=schema)
        with ShardWriter(
            self.out_dir, schema, max_rows=max(1, len(unique)) + 1, start_index=index
        ) as writer:
            writer.write(table)
        self.written.inc(len(unique))
        yield from writer.shards


def write_dead_letters(element, out_dir: str) -> dict[str, Any]:
    """``(bucket, dead letters)`` -> ``dead_letter/part-NNNNN.jsonl``, sorted by source, position."""
    from shards import DeadLetterWriter

    index, items = element
    items = sorted(items, key=lambda d: (d["source"], d["position"], d["stage"]))
    with DeadLetterWriter(out_dir, name=f"part-{index:05d}") as w:
        for d in items:
            w.write(
                d["reason"],
                {"source": d["source"], "position": d["position"], "record": d["payload"]},
                stage=d["stage"],
            )
    return {"path": f"dead_letter/part-{index:05d}.jsonl", "rows": w.count}


class DeadLetterFractionError(RuntimeError):
    """Too many inputs were rejected: the job fails and writes no manifest."""


def finalize(
    _,
    *,
    out_dir: str,
    shard_infos: list,
    dead_infos: list,
    n_input: int,
    sketches: dict,
    cluster_model: Any,
    signals: list,
    options: dict,
    max_dead_fraction: float,
) -> str:
    """Check the accounting and the dead-letter budget, then write the manifest LAST."""
    from shards import build_manifest, write_manifest

    written = sum(int(s["rows"]) for s in shard_infos)
    dead = sum(int(d["rows"]) for d in dead_infos)
    if n_input != written + dead:
        raise RuntimeError(
            f"accounting error: input {n_input} != written {written} + "
            f"dead letter {dead}; no manifest written"
        )
    if n_input and dead / n_input > max_dead_fraction:
        raise DeadLetterFractionError(
            f"{dead} of {n_input} records ({dead / n_input:.2%}) were dead-lettered, over "
            f"--max-dead-letter-fraction={max_dead_fraction:g}; see {out_dir}/dead_letter/. "
            "No manifest was written."
        )
    clusters = None
    if cluster_model:
        np.save(os.path.join(out_dir, "centroids.npy"), cluster_model["centroids"])
        clusters = dict(cluster_model["info"], centroids="centroids.npy")
    manifest = build_manifest(
        sorted(shard_infos, key=lambda s: s["path"]),
        counts={"input": n_input, "written": written, "dead_letter": dead},
        signals=signals,
        stats={c: s.stats() for c, s in sorted(sketches.items())},
        clusters=clusters,
        options=options,
    )
    manifest["dead_letter_files"] = sorted(dead_infos, key=lambda d: d["path"])
    return str(write_manifest(out_dir, json.loads(json.dumps(manifest, default=str))))
