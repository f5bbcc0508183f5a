"""Scored batches staged as Arrow IPC files under ``OUT/staging/``.

The scoring stage writes every scored batch straight to a staging file and passes on only a
small descriptor ``{"path", "rows"}``; texts never travel through Beam's shuffle after they
are read. Once the quantile sketches are complete, each shard is built by reading the staging
files (memory-mapped) and taking its rows (``hash(id) % n_shards``). Staging file names are a
pure function of the batch's first record, so a retried bundle rewrites the same file with the
same bytes. ``writers.finalize`` removes ``staging/`` after the manifest is written.
"""

from __future__ import annotations

import json
import os
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines import clustering
from pipelines.records import stable_hash

STAGING = "staging"


def _path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, STAGING, name)


def staged_table(batch: dict, columns: list[str]) -> pa.Table:
    """A scored batch -> one Arrow table: id, text, source, position, meta (JSON), hash, the
    signal columns (float64) and, when the batch carries them, embeddings."""
    records, scored = batch["records"], batch["columns"]
    cols: dict[str, Any] = {
        "id": pa.array([r["id"] for r in records], pa.string()),
        "text": pa.array([r["text"] for r in records], pa.large_string()),
        "source": pa.array([r["source"] for r in records], pa.string()),
        "position": pa.array([r["position"] for r in records], pa.int64()),
        "meta": pa.array([json.dumps(r["meta"], sort_keys=True) for r in records], pa.string()),
        "hash": pa.array([stable_hash(r["id"]) for r in records], pa.uint64()),
    }
    for c in columns:
        cols[c] = pa.array(np.asarray(scored[c], dtype=np.float64))
    if "embedding" in scored:
        emb = np.ascontiguousarray(scored["embedding"], dtype=np.float32)
        cols["embedding"] = pa.FixedSizeListArray.from_arrays(
            pa.array(emb.reshape(-1)), emb.shape[1]
        )
    return pa.table(cols)


def write_ipc(path: str, table: pa.Table) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    os.replace(tmp, path)


def read_ipc(path: str, columns: list[str] | None = None) -> pa.Table:
    table = pa.ipc.open_file(pa.memory_map(path)).read_all()
    return table.select(columns) if columns else table


class StageFn(beam.DoFn):
    """A batch of scored records -> its staging file; yields ``{"path", "rows", "bytes"}``."""

    def __init__(self, out_dir: str, columns: list[str]) -> None:
        self.out_dir, self.columns = out_dir, list(columns)

    def setup(self) -> None:
        os.makedirs(os.path.join(self.out_dir, STAGING), exist_ok=True)

    def process(self, batch: dict):
        records = batch["records"]
        first = records[0]
        name = f"{stable_hash(first['source'] + chr(0) + str(first['position'])):012x}"
        path = _path(self.out_dir, f"{name}-{len(records)}.arrow")
        write_ipc(path, staged_table(batch, self.columns))
        yield {"path": path, "rows": len(records), "bytes": os.path.getsize(path)}


def sample_entries(staged: dict, seed: int, n_rows: int, sample_size: int):
    """The rows of a staging file that fall in the k-means sample: those whose sha1(seed, id)
    lies below ``sample_size / n_rows`` of the hash range. Deterministic and uniform."""
    threshold = min(1.0, sample_size / max(n_rows, 1)) * 16**12
    t = read_ipc(staged["path"], ["id", "embedding"])
    ids = t["id"].to_pylist()
    for i, rid in enumerate(ids):
        key = clustering.sample_key(seed, rid)
        if int(key[:12], 16) < threshold:
            emb = t["embedding"][i].values.to_numpy(zero_copy_only=False)
            yield (key, rid, np.asarray(emb, dtype=np.float32))


def assignments_path(staged: dict) -> str:
    return staged["path"][: -len(".arrow")] + ".clusters.npz"


def assign_staged(staged: dict, model: dict) -> dict[str, dict[str, np.ndarray]]:
    """Nearest centroid and cosine distance for every row of a staging file, saved next to it;
    returns ``{"columns": {"centroid_distance": distances}}`` (for their quantile sketch)."""
    t = read_ipc(staged["path"], ["embedding"])
    dim = t.schema.field("embedding").type.list_size
    emb = t["embedding"].combine_chunks().values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    cluster, dist = clustering.assign(np.asarray(emb, dtype=np.float32), model["centroids"])
    path = assignments_path(staged)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    np.savez(tmp, cluster=cluster.astype(np.int32), distance=dist.astype(np.float64))
    os.replace(tmp, path)
    return {"columns": {"centroid_distance": np.asarray(dist, dtype=np.float64)}}
