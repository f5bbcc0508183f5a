"""A part's summary: what the rest of the job needs of a staged part, without its text.

Written as ``staging/<run>/done/part-<key>.pkl`` once the part's staging object and dead
letters are written (its existence is what "this part is done" means to ``--resume``), it
holds the part's counts, the staging object's size and sha256, its dead-letter files, its
signal columns (for ranks and statistics), its ids (for finding repeated ids across parts),
its metadata field kinds, and its share of the bounded samples (k-means, proxy). That is a
few dozen bytes per record: a resumed job reads these, not the staged text, and the step
that sketches the written rows reads the signal columns from here (:mod:`pipelines.job.write`),
so that no per-record column crosses the runner's data plane.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.io import storage as fs

DONE = "done"
PARTS = "parts"


def staging_path(staging: str, key: str) -> str:
    return fs.join(staging, PARTS, f"part-{key}.arrow")


def summary_path(staging: str, key: str) -> str:
    return fs.join(staging, DONE, f"part-{key}.pkl")


def save_summary(staging: str, summary: dict[str, Any]) -> None:
    data = pickle.dumps(summary, protocol=5)
    digest = hashlib.sha256(data).hexdigest()
    path = summary_path(staging, summary["key"])
    fs.write_bytes(path, digest.encode() + b"\n" + data, durable=False)  # checked by its digest


def load_summary(staging: str, key: str) -> dict[str, Any] | None:
    """The summary a run wrote for part ``key``, or None when there is none or it does not
    match its own sha256 (then the part is scored again)."""
    path = summary_path(staging, key)
    if not fs.exists(path):
        return None
    summary = _decode(fs.read_bytes(path))
    if summary is None:
        return None
    staged = summary["staging"]
    try:
        size = fs.size(staged["path"])  # one metadata request
    except OSError:  # gone (FileNotFoundError, or Beam's error for a missing object)
        return None
    if size != staged["bytes"]:
        return None  # torn by a machine crash (staging is written without fsync)
    return summary


def read_summary(path: str) -> dict[str, Any]:
    """The summary at ``path``, written earlier in this run (an error if it does not match
    its own sha256)."""
    summary = _decode(fs.read_bytes(path))
    if summary is None:
        raise RuntimeError(f"{path}: its sha256 differs from the one written with it")
    return summary


def _decode(raw: bytes) -> dict[str, Any] | None:
    digest, _, data = raw.partition(b"\n")
    if hashlib.sha256(data).hexdigest().encode() != digest:
        return None
    return pickle.loads(data)  # noqa: S301 - written by this job, under its own prefix


def kmeans_rows(table: pa.Table, seed: int, cap: int) -> list[tuple]:
    """``(key, id, embedding)`` of the part's ``cap`` rows with the smallest 48-bit
    sha1(seed, id): its offer towards the k-means sample."""
    from pipelines.job.samples import smallest

    if not table.num_rows or "embedding" not in table.column_names:
        return []
    ids = table["id"].to_pylist()
    keys = [int(hashlib.sha1(f"{seed}\0{i}".encode()).hexdigest()[:12], 16) for i in ids]
    best = smallest(list(zip(keys, ids, range(len(ids)), strict=True)), cap)
    if not best:
        return []
    dim = table.schema.field("embedding").type.list_size
    emb = table["embedding"].combine_chunks().values.to_numpy(zero_copy_only=False)
    emb = emb.reshape(-1, dim)
    return [(k, i, np.array(emb[row], dtype=np.float32)) for k, i, row in best]


def proxy_rows(
    table: pa.Table, target: str, features: list[str], seed: int, cap: int
) -> tuple[list[tuple], int]:
    """The part's offer towards the proxy's fit sample: ``(order, id, features, text,
    target)`` of its ``cap`` first rows in hash order that have a target, and how many rows
    have one."""
    from pipelines.job.samples import smallest
    from pipelines.model.proxy import feature_matrix, sample_key

    if not table.num_rows:
        return [], 0
    values = table[target].to_numpy()
    have = np.flatnonzero(np.isfinite(values))
    if not len(have):
        return [], 0
    texts = table["text"].take(pa.array(have)).to_pylist()
    ids = table["id"].take(pa.array(have)).to_pylist()
    order = [sample_key(seed, t) for t in texts]
    best = smallest(list(zip(order, ids, range(len(have)), strict=True)), cap)
    cols = {f: _numpy(table[f].take(pa.array(have))) for f in features}
    matrix = feature_matrix(cols, features)
    rows = [(o, i, matrix[j], texts[j], float(values[have[j]])) for o, i, j in best]
    return rows, len(have)


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A float column as float64, a fixed-size list column (embeddings) as a 2-D array."""
    if pa.types.is_fixed_size_list(column.type):
        values = column.combine_chunks().values.to_numpy(zero_copy_only=False)
        return values.reshape(len(column), column.type.list_size)
    return column.to_numpy().astype(np.float64)
