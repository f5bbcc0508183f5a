"""Scored rows staged under ``OUT/staging/``, partitioned by shard as they are written.

The scoring stage writes its scored rows straight to staging pieces and passes on only a small
descriptor ``{"shard", "path", "rows", "bytes"}``: record text never crosses a Beam shuffle.
A row belongs to shard ``hash(id) % n_shards``; :class:`StageFn` keeps one buffer per shard
over a bundle and writes a piece per shard when the bundle ends or its buffers pass
``flush_bytes``. The descriptors are then grouped by shard, so each shard writer opens only
its own pieces: work and opens grow with the records, not with shards x pieces.

A piece is named by the sha1 of its own bytes (``staging/shard-00003/<sha1>.arrow``): a bundle
that the runner retries rewrites the same objects with the same bytes, or, if it is bundled
differently, writes new names; only the pieces named by committed descriptors are read, and
``staging/`` is deleted once the manifest is written.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.io import storage as fs
from pipelines.io.records import stable_hash

STAGING = "staging"
FLUSH_BYTES = 64 << 20  # a bundle's buffered rows past this are written out


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


def ipc_file_bytes(table: pa.Table) -> pa.Buffer:
    """``table`` as an Arrow IPC file (random access), in memory."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_piece(path: str, columns: list[str] | None = None) -> pa.Table:
    """A staging piece as a Table: memory-mapped locally, downloaded from a bucket."""
    source = pa.memory_map(path) if not fs.is_remote(path) else pa.BufferReader(fs.read_bytes(path))
    table = pa.ipc.open_file(source).read_all()
    return table.select(columns) if columns else table


def piece_dir(out_dir: str, shard: int) -> str:
    return fs.join(out_dir, STAGING, f"shard-{shard:05d}")


class StageFn(beam.DoFn):
    """Scored batches -> staging pieces, one per shard and flush; yields their descriptors."""

    def __init__(
        self, out_dir: str, columns: list[str], n_shards: int, flush_bytes: int = FLUSH_BYTES
    ) -> None:
        self.out_dir, self.columns = out_dir, list(columns)
        self.n_shards, self.flush_bytes = int(n_shards), int(flush_bytes)

    def start_bundle(self) -> None:
        self._parts: dict[int, list[pa.Table]] = {}
        self._bytes = 0

    def process(self, batch: dict):
        table = staged_table(batch, self.columns)
        shard = table["hash"].to_numpy() % self.n_shards
        order = np.argsort(shard, kind="stable")
        shard_sorted = shard[order]
        cuts = np.flatnonzero(np.diff(shard_sorted)) + 1
        table = table.take(pa.array(order))
        for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(order)].tolist(), strict=True):
            self._parts.setdefault(int(shard_sorted[lo]), []).append(table.slice(lo, hi - lo))
        self._bytes += table.nbytes
        if self._bytes >= self.flush_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for descriptor in self._flush():
            yield WindowedValue(descriptor, 0, [GlobalWindow()])

    def _flush(self):
        parts, self._parts, self._bytes = self._parts, {}, 0
        for shard in sorted(parts):
            piece = pa.concat_tables(parts[shard])
            data = ipc_file_bytes(piece)
            digest = hashlib.sha1(memoryview(data)).hexdigest()[:24]
            path = fs.join(piece_dir(self.out_dir, shard), f"{digest}.arrow")
            fs.write_bytes(path, memoryview(data))
            yield {"shard": shard, "path": path, "rows": piece.num_rows, "bytes": data.size}
