"""Write shards and dead letters from Beam workers, then the manifest (the commit point)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from pipelines import difficulty
from pipelines.schema import convert_meta, meta_column, row_schema
from pipelines.staging import STAGING, assignments_path, read_ipc
from pipelines.steps import record_dead_letter


class WriteShardFn(beam.DoFn):
    """Shard ``index`` of ``n_shards`` -> one Arrow shard built from the staging files: the rows
    whose ``hash(id) % n_shards == index``, sorted by (id, source, position), with difficulty,
    bucket and (with clusters) the nearest centroid. Duplicate ids are dead-lettered (tag
    ``dead``). Yields the shard's ``{path, rows, bytes, sha256}``."""

    def __init__(
        self,
        out_dir: str,
        signal_columns: list[str],
        *,
        directions: dict[str, int],
        weights: dict[str, float],
        n_buckets: int,
        clusters: bool,
        embedding_dim: int | None,
    ) -> None:
        self.out_dir, self.signal_columns = out_dir, list(signal_columns)
        self.directions, self.weights, self.n_buckets = directions, weights, n_buckets
        self.clusters, self.embedding_dim = clusters, embedding_dim
        self.written = Metrics.counter("gradum", "written")

    def _gather(self, index: int, n_shards: int, staged: list[dict]) -> pa.Table:
        parts = []
        for d in sorted(staged, key=lambda d: d["path"]):
            t = read_ipc(d["path"])
            if self.clusters:
                with np.load(assignments_path(d)) as a:
                    t = t.append_column("cluster", pa.array(a["cluster"]))
                    t = t.append_column("centroid_distance", pa.array(a["distance"]))
            keep = np.flatnonzero(t["hash"].to_numpy() % n_shards == index)
            if keep.size:
                parts.append(t.take(keep))
        if not parts:
            return None
        table = pa.concat_tables(parts)
        order = pc.sort_indices(
            table, [("id", "ascending"), ("source", "ascending"), ("position", "ascending")]
        )
        return table.take(order)

    def process(
        self,
        index: int,
        n_shards: int,
        staged: list[dict],
        sketches: dict,
        meta_types: dict[str, str],
    ):
        from shards import ShardWriter

        table = self._gather(index, n_shards, staged)
        if table is None:
            return
        ids = table["id"]
        dup = np.zeros(len(ids), dtype=bool)  # sorted by id: a repeat follows its first
        if len(ids) > 1:
            same = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
            dup[1:] = same.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(dup).tolist():
            row = {k: table[k][i].as_py() for k in ("id", "text", "source", "position")}
            row["meta"] = json.loads(table["meta"][i].as_py())
            reason = f"duplicate id {row['id']!r}"
            yield beam.pvalue.TaggedOutput("dead", record_dead_letter("write", reason, row))
        if dup.any():
            table = table.filter(pa.array(~dup))
        ranks = {c: sketches[c].rank(table[c].to_numpy().astype(np.float64)) for c in self.weights}
        d = difficulty.combine(ranks, self.directions, self.weights)
        names = set(self.signal_columns)
        schema = row_schema(
            meta_types,
            self.signal_columns,
            clusters=self.clusters,
            embedding_dim=self.embedding_dim,
        )
        cols: dict[str, Any] = {k: table[k] for k in ("id", "text", "source")}
        if meta_types:
            metas = [json.loads(m) for m in table["meta"].to_pylist()]
            for key, kind in meta_types.items():
                cols[meta_column(key, names)] = [convert_meta(m.get(key), kind) for m in metas]
        for c in self.signal_columns:
            cols[c] = table[c].to_numpy().astype(np.float32)
        if self.embedding_dim:
            cols["embedding"] = table["embedding"]
        if self.clusters:
            cols["cluster"] = table["cluster"]
        cols["difficulty"] = d.astype(np.float32)
        cols["bucket"] = difficulty.buckets(d, self.n_buckets).astype(np.int16)
        out = pa.table({f.name: cols[f.name] for f in schema}, schema=schema)
        with ShardWriter(
            self.out_dir,
            schema,
            max_rows=out.num_rows + 1,
            max_bytes=1 << 62,  # one file per shard index: rotating would reuse index + 1
            start_index=index,
        ) as writer:
            writer.write(out)
        self.written.inc(out.num_rows)
        yield from writer.shards


def write_dead_letters(element, out_dir: str, stage: str) -> dict[str, Any]:
    """``(bucket, dead letters)`` of one stage -> ``dead_letter/STAGE-NNNNN.jsonl``, sorted by
    source, position."""
    from shards import DeadLetterWriter

    index, items = element
    items = sorted(items, key=lambda d: (d["source"], d["position"], d["stage"]))
    name = f"{stage}-{index:05d}"
    with DeadLetterWriter(out_dir, name=name) as w:
        for d in items:
            w.write(
                d["reason"],
                {"source": d["source"], "position": d["position"], "record": d["payload"]},
                stage=d["stage"],
            )
    return {"path": f"dead_letter/{name}.jsonl", "rows": w.count}


class DeadLetterFractionError(RuntimeError):
    """Too many inputs were rejected: the job fails and writes no manifest."""


def finalize(
    _,
    *,
    out_dir: str,
    shard_infos: list,
    dead_read: list,
    dead_score: list,
    dead_write: list,
    n_input: int,
    sketches: dict,
    cluster_model: Any,
    signals: list,
    options: dict,
    max_dead_fraction: float,
) -> str:
    """Check the accounting and the dead-letter budget, then write the manifest LAST."""
    from shards import build_manifest, write_manifest

    dead_infos = [*dead_read, *dead_score, *dead_write]
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
    path = write_manifest(out_dir, json.loads(json.dumps(manifest, default=str)))
    shutil.rmtree(os.path.join(out_dir, STAGING), ignore_errors=True)
    return str(path)
