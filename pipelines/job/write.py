"""Build each shard from its own staging pieces: prepare (dedupe, sketch inputs), then write.

Shard ``s`` is the rows whose ``hash(id) % n_shards == s``, sorted by (id, source, position):
a pure function of the input, so the shard bytes do not depend on the runner or its bundling.
Both steps read only shard ``s``'s pieces (``staging/shard-s/``).

1. :class:`PrepareShardFn`: dead-letters repeated ids (the first by (source, position)
   stays) and yields the signal columns of the rows that will be written, for the quantile
   sketches: the statistics and ranks count each written record once.
2. :class:`WriteShardFn`: the same rows, with difficulty (from the finished rank sketches), bucket
   and cluster, uploaded once as ``shards/part-<s>.arrow``; yields ``{path, rows, bytes,
   sha256, staging_pieces}`` (the pieces it read: each step opens each of them once).
"""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from pipelines.io import metadata
from pipelines.io import storage as fs
from pipelines.io.row_schema import meta_columns, row_schema
from pipelines.job.stage import read_piece
from pipelines.job.steps import record_dead_letter
from pipelines.model import clustering
from pipelines.model import proxy as proxy_model
from pipelines.stats import difficulty


def gather_shard(
    pieces: list[dict], model: dict | None, proxy: dict | None = None
) -> tuple[pa.Table, np.ndarray]:
    """The rows of one shard's pieces sorted by (id, source, position), with ``cluster`` and
    ``centroid_distance`` when a k-means ``model`` is given, ``<target>_proxy`` when a proxy
    is, and the mask of repeated ids."""
    parts = [read_piece(d["path"]) for d in sorted(pieces, key=lambda d: d["path"])]
    table = pa.concat_tables(parts)
    order = pc.sort_indices(
        table, [("id", "ascending"), ("source", "ascending"), ("position", "ascending")]
    )
    table = table.take(order)
    if model is not None:
        dim = table.schema.field("embedding").type.list_size
        emb = table["embedding"].combine_chunks().values.to_numpy(zero_copy_only=False)
        cluster, dist = clustering.assign(emb.reshape(-1, dim), model["centroids"])
        table = table.append_column("cluster", pa.array(cluster, pa.int32()))
        table = table.append_column("centroid_distance", pa.array(dist.astype(np.float64)))
    if proxy is not None:
        features = proxy["features"]
        cols = {f: _numpy(table[f]) for f in features}
        texts = table["text"].to_pylist() if proxy.get("tokens") is not None else None
        column = f"{proxy['info']['target']}_proxy"
        predicted = proxy_model.predict(proxy, cols, features, texts)
        table = table.append_column(column, pa.array(predicted))
    ids = table["id"]
    dup = np.zeros(len(ids), dtype=bool)  # sorted by id: a repeat follows its first
    if len(ids) > 1:
        same = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        dup[1:] = same.to_numpy(zero_copy_only=False)
    return table, dup


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A float column as float64, a fixed-size list column (embeddings) as a 2-D array."""
    if pa.types.is_fixed_size_list(column.type):
        values = column.combine_chunks().values.to_numpy(zero_copy_only=False)
        return values.reshape(len(column), column.type.list_size)
    return column.to_numpy().astype(np.float64)


class PrepareShardFn(beam.DoFn):
    """``(shard, pieces)`` -> dead letters of repeated ids (tag ``dead``) and
    ``{"columns": {signal: values}}`` of the rows to be written (main)."""

    def __init__(self, columns: list[str], progress_dir: str | None = None) -> None:
        self.columns = list(columns)
        self.progress_dir = progress_dir  # see pipelines.console.progress: the bar says "writing"

    def process(
        self, element: tuple[int, list[dict]], model: dict | None = None, proxy: dict | None = None
    ):
        from pipelines.console.progress import PROGRESS

        PROGRESS.configure(self.progress_dir)
        PROGRESS.add(shards=1)
        PROGRESS.flush()
        _, pieces = element
        table, dup = gather_shard(list(pieces), model, proxy)
        for i in np.flatnonzero(dup).tolist():
            row = {k: table[k][i].as_py() for k in ("id", "text", "source", "position")}
            row["meta"] = json.loads(table["meta"][i].as_py())
            reason = f"duplicate id {row['id']!r}"
            yield beam.pvalue.TaggedOutput("dead", record_dead_letter("write", reason, row))
        kept = table.filter(pa.array(~dup)) if dup.any() else table
        yield {"columns": {c: kept[c].to_numpy() for c in self.columns}}


class WriteShardFn(beam.DoFn):
    """``(shard, pieces)`` -> the shard, uploaded once under its final name."""

    def __init__(
        self,
        out_dir: str,
        signal_columns: list[str],
        *,
        directions: dict[str, int],
        weights: dict[str, float],
        n_buckets: int,
        embedding_dim: int | None,
    ) -> None:
        self.out_dir, self.signal_columns = out_dir, list(signal_columns)
        self.directions, self.weights, self.n_buckets = directions, weights, n_buckets
        self.embedding_dim = embedding_dim
        self.written = Metrics.counter("gradum", "written")

    def process(
        self,
        element: tuple[int, list[dict]],
        rank_sketches: dict,
        meta_types: dict[str, str],
        model: dict | None = None,
        proxy: dict | None = None,
    ):
        from shards.hashing import sha256_bytes
        from shards.paths import shard_name
        from shards.writer import stream_bytes

        index, pieces = element
        pieces = list(pieces)  # a GroupByKey iterable may be lazy and unsized
        table, dup = gather_shard(pieces, model, proxy)
        if dup.any():
            table = table.filter(pa.array(~dup))
        out = self._rows(table, rank_sketches, meta_types, clusters=model is not None)
        data = stream_bytes(out)
        rel = shard_name(index)
        fs.write_bytes(fs.join(self.out_dir, *rel.split("/")), memoryview(data))
        self.written.inc(out.num_rows)
        yield {
            "path": rel,
            "rows": out.num_rows,
            "bytes": data.size,
            "sha256": sha256_bytes(data),
            "staging_pieces": len(pieces),
        }

    def _rows(self, table: pa.Table, rank_sketches: dict, meta_types: dict, *, clusters: bool):
        ranks = {
            c: rank_sketches[c].rank(table[c].to_numpy().astype(np.float64)) for c in self.weights
        }
        d = difficulty.combine(ranks, self.directions, self.weights)
        schema = row_schema(
            meta_types, self.signal_columns, clusters=clusters, embedding_dim=self.embedding_dim
        )
        cols: dict[str, Any] = {k: table[k] for k in ("id", "text", "source")}
        if meta_types:
            metas = [json.loads(m) for m in table["meta"].to_pylist()]
            names = meta_columns(meta_types, self.signal_columns)
            for key, kind in meta_types.items():
                cols[names[key]] = [metadata.encode(m.get(key), kind) for m in metas]
        for c in self.signal_columns:
            cols[c] = table[c].to_numpy().astype(np.float32)
        if self.embedding_dim:
            cols["embedding"] = table["embedding"]
        if clusters:
            cols["cluster"] = table["cluster"]
        cols["difficulty"] = d.astype(np.float32)
        cols["bucket"] = difficulty.buckets(d, self.n_buckets).astype(np.int16)
        return pa.table({f.name: cols[f.name] for f in schema}, schema=schema)
