"""Write a part's shard: its staged rows, repeated ids dropped, difficulty and clusters added.

Shard ``shards/part-<key>.arrow`` holds the rows of part ``key`` in input order: a pure
function of the input, so its bytes do not depend on the runner or its bundling. Two steps
read a part's staging object (at most twice, and only the second when clustering or a proxy
needs the embeddings or texts):

1. :class:`KeptColumns`: the signal columns of the rows that will be written (repeated ids
   out), with ``centroid_distance`` and the proxy's column computed when they exist, written
   as the part's kept object (:mod:`pipelines.job.kept`); they feed the rank and value
   sketches, so the statistics count each written record once.
2. :class:`WriteShard`: the rows, with difficulty (from the finished rank sketches), bucket
   and cluster, uploaded once as the shard, and the sampler's index beside it
   (``index/part-<key>.parquet``, :mod:`shards.index`); repeated ids are dead-lettered.
"""

from __future__ import annotations

import hashlib
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines.io import storage as fs
from pipelines.io.row_schema import meta_columns, row_schema
from pipelines.io.staged import meta_column, read_ipc_file
from pipelines.job.dead_letters import record_dead_letter, write_part_dead_letters
from pipelines.job.kept import write_kept
from pipelines.job.summary import read_summary
from pipelines.job.worker_fn import WorkerFn
from pipelines.model import clustering
from pipelines.model import proxy as proxy_model
from pipelines.stats import difficulty


def read_staged(staging: dict, verify: bool = False) -> pa.Table:
    """A part's staged table: memory-mapped locally, downloaded from a bucket; with
    ``verify``, its sha256 checked against the one recorded when it was written."""
    path = staging["path"]
    if fs.is_remote(path) or verify:
        data = fs.read_bytes(path)
        if verify and hashlib.sha256(data).hexdigest() != staging["sha256"]:
            raise RuntimeError(f"{path}: its sha256 differs from the one its run recorded")
        return read_ipc_file(data)
    return read_ipc_file(path)


def _dropped(key: str, losers: Any) -> np.ndarray:
    if losers is None:
        return np.empty(0, dtype=np.int64)
    try:
        found = list(losers[key])  # an AsMultiMap side input: fetched by key (lazily on Dataflow)
    except KeyError:
        found = []
    if not found:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate([np.asarray(r, dtype=np.int64) for r in found]))


def _keep_mask(n: int, drop: np.ndarray) -> np.ndarray:
    keep = np.ones(n, dtype=bool)
    keep[drop] = False
    return keep


def derived_columns(table: pa.Table, model: dict | None, proxy: dict | None) -> dict:
    """``cluster`` and ``centroid_distance`` (k-means) and ``<target>_proxy`` of each row."""
    out: dict[str, np.ndarray] = {}
    if not table.num_rows:
        if model is not None:
            out["cluster"], out["centroid_distance"] = np.empty(0, np.int32), np.empty(0)
        if proxy is not None:
            out[f"{proxy['info']['target']}_proxy"] = np.empty(0)
        return out
    if model is not None:
        dim = table.schema.field("embedding").type.list_size
        emb = table["embedding"].combine_chunks().values.to_numpy(zero_copy_only=False)
        cluster, dist = clustering.assign(emb.reshape(-1, dim), model["centroids"])
        out["cluster"], out["centroid_distance"] = cluster, dist.astype(np.float64)
    if proxy is not None:
        from pipelines.job.summary import _numpy

        features = proxy["features"]
        cols = {f: _numpy(table[f]) for f in features}
        texts = table["text"].to_pylist() if proxy.get("tokens") is not None else None
        column = f"{proxy['info']['target']}_proxy"
        out[column] = proxy_model.predict(proxy, cols, features, texts)
    return out


class KeptColumns(WorkerFn):
    """``{"key", "staging", "summary"}`` -> ``{"key", "kept"}``: the signal columns of the rows
    that will be written, as the part's kept object (:mod:`pipelines.job.kept`), which rank
    passes 0 and 1 read; and the columns themselves (tag ``columns``) for the value sketches,
    whose partial step runs in the same bundle.

    The signal columns come from the part's summary object, not through the runner: what a
    bundle carries in and hands on is a few hundred bytes per part, whatever the part's rows.
    A part with no row left hands on nothing."""

    def __init__(self, columns: list[str], needs_rows: bool, staging: str) -> None:
        self.columns, self.needs_rows, self.staging = list(columns), needs_rows, staging

    def process(self, element: dict, losers=None, model=None, proxy=None):
        cols = dict(read_summary(element["summary"])["columns"])
        n = len(next(iter(cols.values()))) if cols else 0
        if self.needs_rows and (model is not None or proxy is not None):
            table = read_staged(element["staging"])
            n = table.num_rows
            cols.update(derived_columns(table, model, proxy))
        keep = _keep_mask(n, _dropped(element["key"], losers))
        if not keep.any():
            return
        kept = {c: np.asarray(cols[c], dtype=np.float64)[keep] for c in self.columns}
        yield {"key": element["key"], "kept": write_kept(self.staging, element["key"], kept)}
        yield beam.pvalue.TaggedOutput("columns", {"columns": kept})


class WriteShard(WorkerFn):
    """A part's info -> its shard and index, uploaded once (main: the manifest's shard entry)
    and the dead-letter files of its repeated ids (tag ``dead``)."""

    def __init__(
        self,
        out_dir: str,
        signal_columns: list[str],
        *,
        directions: dict[str, int],
        weights: dict[str, float],
        n_buckets: int,
        keep_embeddings: bool,
    ) -> None:
        self.out_dir, self.signal_columns = out_dir, list(signal_columns)
        self.directions, self.weights, self.n_buckets = directions, weights, n_buckets
        self.keep_embeddings = keep_embeddings
        self.written = Metrics.counter("gradum", "written")

    def process(
        self,
        info: dict,
        rank_sketches: dict,
        meta_types: dict[str, str],
        losers=None,
        model: dict | None = None,
        proxy: dict | None = None,
    ):
        from pipelines.console.progress import PROGRESS
        from shards.hashing import sha256_bytes
        from shards.index import index_bytes, index_name, index_table
        from shards.paths import shard_name
        from shards.writer import stream_bytes

        PROGRESS.add(shards=1)
        PROGRESS.flush()
        key = info["key"]
        table = read_staged(info["staging"], verify=info.get("reused", False))
        drop = _dropped(key, losers)
        if len(drop):
            dead = [
                record_dead_letter(
                    "write", f"duplicate id {table['id'][i].as_py()!r}", _row(table, i)
                )
                for i in drop.tolist()
            ]
            for d in write_part_dead_letters(self.out_dir, f"part-{key}-dup", dead):
                yield beam.pvalue.TaggedOutput("dead", d)
            table = table.filter(pa.array(_keep_mask(table.num_rows, drop)))
        if not table.num_rows:  # every record of the part was dead-lettered: no empty shard
            return
        derived = derived_columns(table, model, proxy)
        out = self._rows(table, derived, rank_sketches, meta_types, clusters=model is not None)
        data = stream_bytes(out)
        rel = shard_name(key)
        fs.write_bytes(fs.join(self.out_dir, *rel.split("/")), memoryview(data))
        index = index_bytes(index_table(out, self.signal_columns))
        index_rel = index_name(rel)
        fs.write_bytes(fs.join(self.out_dir, *index_rel.split("/")), index)
        self.written.inc(out.num_rows)
        yield {
            "path": rel,
            "rows": out.num_rows,
            "bytes": data.size,
            "sha256": sha256_bytes(data),
            "index": {
                "path": index_rel,
                "rows": out.num_rows,
                "bytes": len(index),
                "sha256": sha256_bytes(index),
            },
        }

    def _rows(self, table, derived, rank_sketches, meta_types, *, clusters: bool) -> pa.Table:
        values = {
            c: derived[c] if c in derived else table[c].to_numpy() for c in self.signal_columns
        }
        ranks = {
            c: rank_sketches[c].rank(np.asarray(values[c], dtype=np.float64)) for c in self.weights
        }
        d = difficulty.combine(ranks, self.directions, self.weights)
        dim = table.schema.field("embedding").type.list_size if self.keep_embeddings else None
        schema = row_schema(meta_types, self.signal_columns, clusters=clusters, embedding_dim=dim)
        cols: dict[str, Any] = {k: table[k] for k in ("id", "text", "source")}
        names = meta_columns(meta_types, self.signal_columns)
        for field, kind in meta_types.items():
            cols[names[field]] = meta_column(table, field, kind)
        for c in self.signal_columns:
            cols[c] = np.asarray(values[c]).astype(np.float32)
        if dim:
            cols["embedding"] = table["embedding"]
        if clusters:
            cols["cluster"] = pa.array(derived["cluster"], pa.int32())
        cols["difficulty"] = d.astype(np.float32)
        cols["bucket"] = difficulty.buckets(d, self.n_buckets).astype(np.int16)
        return pa.table({f.name: cols[f.name] for f in schema}, schema=schema)


def _row(table: pa.Table, i: int) -> dict:
    """Row ``i`` of a staged table as a record (for its dead letter)."""
    import json

    from pipelines.io.staged import META_PREFIX

    meta = {}
    for field in table.schema:
        if not field.name.startswith(META_PREFIX):
            continue
        value = table[field.name][i].as_py()
        if value is not None and (field.metadata or {}).get(b"kind") == b"json":
            value = json.loads(value)
        if value is not None:
            meta[field.name[len(META_PREFIX) :]] = value
    return {
        "id": table["id"][i].as_py(),
        "text": table["text"][i].as_py(),
        "source": table["source"][i].as_py(),
        "position": table["position"][i].as_py(),
        "meta": meta,
    }
