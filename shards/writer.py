"""ShardWriter: write Arrow IPC stream shards, rotated by rows or bytes, committed by rename."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from .hashing import sha256_bytes, sha256_file
from .index import index_bytes, index_columns, index_name
from .paths import INDEX_DIR, SHARDS_DIR, shard_name

DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def stream_bytes(table: pa.Table) -> pa.Buffer:
    """``table`` as one uncompressed Arrow IPC *stream* (the shard format), in memory: for
    writers that upload a shard once, under its final name (object stores)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class ShardWriter:
    """Write record batches to ``OUT/shards/part-NNNNN.arrow`` (Arrow IPC *stream* format).

    Each shard is written to a hidden temporary name and renamed once its stream is closed,
    so a ``part-*.arrow`` file is always complete. A shard is rotated when it reaches
    ``max_rows`` rows (exactly; batches are split) or ``max_bytes`` bytes of buffers
    (approximate, checked after each batch). Shards are uncompressed so readers can
    memory-map them without copies.

    Beside each shard the writer puts its index (:mod:`shards.index`):
    ``OUT/index/part-NNNNN.parquet`` with the rows' ``id``, ``difficulty``, ``bucket``,
    ``cluster`` and scalar signal columns (``signal_columns``; default: every floating-point
    column), written before the shard is renamed into place. ``index=False`` writes none.

    Use as a context manager; ``shards`` then lists ``{path, rows, bytes, sha256, index}`` for
    the manifest. The manifest itself is written separately, last, with
    :func:`write_manifest`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        schema: pa.Schema | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start_index: int = 0,
        index: bool = True,
        signal_columns: list[str] | None = None,
    ) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError("max_rows and max_bytes must be >= 1")
        self.out_dir = Path(out_dir)
        self.schema = schema
        self.max_rows = int(max_rows)
        self.max_bytes = int(max_bytes)
        self.shards: list[dict[str, Any]] = []
        self._index = int(start_index)
        self._sink: pa.OSFile | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._tmp: Path | None = None
        self._rows = 0
        self._bytes = 0
        self._closed = False
        self.index = bool(index)
        self.signal_columns = signal_columns
        self._index_parts: list[pa.RecordBatch] = []
        (self.out_dir / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        if self.index:
            (self.out_dir / INDEX_DIR).mkdir(parents=True, exist_ok=True)

    # context manager -------------------------------------------------------------------
    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # public ----------------------------------------------------------------------------
    @property
    def rows_written(self) -> int:
        """Rows in completed shards plus the shard being written."""
        return sum(s["rows"] for s in self.shards) + self._rows

    def write(self, data: pa.RecordBatch | pa.Table | dict[str, Any]) -> None:
        """Append a RecordBatch, Table or ``{column: values}`` dict, rotating as needed.

        A zero-row input opens a shard (so ``write(empty); rotate()`` makes an empty shard).
        """
        if self._closed:
            raise ValueError("ShardWriter is closed")
        table = self._to_table(data)
        if table.num_rows == 0:
            self._ensure_open()
            return
        for batch in table.to_batches():
            start = 0
            while start < batch.num_rows:
                self._ensure_open()
                room = self.max_rows - self._rows
                piece = batch.slice(start, min(room, batch.num_rows - start))
                self._writer.write_batch(piece)
                if self.index and self._index_names():
                    self._index_parts.append(piece.select(self._index_names()))
                self._rows += piece.num_rows
                self._bytes += piece.nbytes
                start += piece.num_rows
                if self._rows >= self.max_rows or self._bytes >= self.max_bytes:
                    self.rotate()

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append a list of row dicts (convenience for small writers)."""
        if not rows:
            return
        if self.schema is not None:
            self.write(pa.Table.from_pylist(rows, schema=self.schema))
        else:
            self.write(pa.Table.from_pylist(rows))

    def rotate(self) -> None:
        """Finish the current shard (if one is open): close, rename, hash, record."""
        if self._writer is None:
            return
        self._writer.close()
        self._sink.close()
        rel = shard_name(self._index)
        entry: dict[str, Any] = {"path": rel, "rows": self._rows}
        if self.index and self._index_names():
            entry["index"] = self._write_index(rel)
        self._index_parts = []
        final = self.out_dir / rel
        os.replace(self._tmp, final)
        entry["bytes"] = final.stat().st_size
        entry["sha256"] = sha256_file(final)
        self.shards.append(
            {k: entry[k] for k in ("path", "rows", "bytes", "sha256", "index") if k in entry}
        )
        self._index += 1
        self._writer = self._sink = self._tmp = None
        self._rows = self._bytes = 0

    def close(self) -> list[dict[str, Any]]:
        """Finish the last shard and return the shard entries.

        When nothing at all was written but the schema is known, one empty shard is written
        so that a zero-row dataset still carries its schema.
        """
        if self._closed:
            return self.shards
        if not self.shards and self._writer is None and self.schema is not None:
            self._ensure_open()
        self.rotate()
        self._closed = True
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (its temporary file) and close."""
        if self._writer is not None:
            try:
                self._writer.close()
                self._sink.close()
            finally:
                if self._tmp is not None and self._tmp.exists():
                    self._tmp.unlink()
        self._index_parts = []
        self._writer = self._sink = self._tmp = None
        self._closed = True

    # internals -------------------------------------------------------------------------
    def _index_names(self) -> list[str]:
        signals = self.signal_columns
        if signals is None:
            signals = [f.name for f in self.schema if pa.types.is_floating(f.type)]
        return index_columns(self.schema, signals)

    def _write_index(self, rel: str) -> dict[str, Any]:
        """Write the index part of shard ``rel`` (tmp + rename) and return its entry."""
        parts, self._index_parts = self._index_parts, []
        names = self._index_names()
        schema = self.schema.empty_table().select(names).schema
        table = pa.Table.from_batches(parts, schema=schema)
        data = index_bytes(table)
        irel = index_name(rel)
        final = self.out_dir / irel
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, final)
        return {
            "path": irel,
            "rows": table.num_rows,
            "bytes": len(data),
            "sha256": sha256_bytes(data),
        }

    def _to_table(self, data: pa.RecordBatch | pa.Table | dict[str, Any]) -> pa.Table:
        if isinstance(data, dict):
            table = pa.table(data, schema=self.schema) if self.schema else pa.table(data)
        elif isinstance(data, pa.RecordBatch):
            table = pa.Table.from_batches([data])
        elif isinstance(data, pa.Table):
            table = data
        else:
            raise TypeError(f"cannot write {type(data).__name__}; pass a Table, batch or dict")
        if self.schema is None:
            self.schema = table.schema
        elif not table.schema.equals(self.schema):
            try:
                table = table.select(self.schema.names).cast(self.schema)
            except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
                raise ValueError(
                    f"batch schema does not match the shard schema:\n{table.schema}\n"
                    f"expected:\n{self.schema}"
                ) from e
        return table

    def _ensure_open(self) -> None:
        if self._writer is not None:
            return
        final = self.out_dir / shard_name(self._index)
        self._tmp = final.with_name(f".{final.name}.tmp")
        self._sink = pa.OSFile(str(self._tmp), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
