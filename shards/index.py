"""The index: per shard, only the columns a sampler needs, beside the shard.

``OUT/index/part-KEY.parquet`` holds, row for row in the order of ``OUT/shards/part-KEY.arrow``,
the columns ``id``, ``difficulty``, ``bucket``, ``cluster`` (when clustering ran) and every
scalar signal (float32). No text, no embeddings, no passthrough metadata: about 30-60 bytes
per record, a few per cent of the shard's bytes, and Parquet lets a reader fetch only the
columns it asks for (one range request per column chunk on an object store).

The manifest's entry of each shard carries ``"index": {"path", "rows", "bytes", "sha256"}``.
A dataset written before the index existed has no such key: readers fall back to the shards.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa

from .paths import INDEX_DIR, SHARDS_DIR

# Columns that never go into the index, whatever their type.
_NOT_INDEXED = {"text", "source", "embedding"}
BASE_COLUMNS = ("id", "difficulty", "bucket", "cluster")


def index_name(shard_rel: str) -> str:
    """``shards/part-KEY.arrow`` -> ``index/part-KEY.parquet``."""
    head, _, name = shard_rel.rpartition("/")
    if head != SHARDS_DIR or not name.endswith(".arrow"):
        raise ValueError(f"{shard_rel!r} is not a shard path under {SHARDS_DIR}/")
    return f"{INDEX_DIR}/{name[: -len('.arrow')]}.parquet"


def index_columns(schema: pa.Schema, signal_columns: list[str]) -> list[str]:
    """The index's columns for a shard of ``schema``: the base columns it has, then the
    scalar signal columns in ``signal_columns`` order."""
    counts: dict[str, int] = {}
    for n in schema.names:
        counts[n] = counts.get(n, 0) + 1
    names = {n for n, c in counts.items() if c == 1}  # a repeated name is ambiguous: left out
    base = [c for c in BASE_COLUMNS if c in names]
    signals = [
        c
        for c in signal_columns
        if c in names
        and c not in _NOT_INDEXED
        and c not in base
        and pa.types.is_floating(schema.field(c).type)
    ]
    return base + signals


def index_table(shard: pa.Table, signal_columns: list[str]) -> pa.Table:
    """The index of one shard (same rows, same order)."""
    return shard.select(index_columns(shard.schema, signal_columns))


# Columns worth a Parquet dictionary: few distinct values. Ids are unique and signals mostly
# distinct, so a dictionary there is built, overflows its page and is thrown away: on the
# 1e6-record efficiency corpus that made the index 2x slower to write and 6 % larger.
_DICTIONARY_COLUMNS = ("bucket", "cluster")


def index_bytes(table: pa.Table) -> bytes:
    """``table`` as one Parquet file (zstd, one row group, statistics on, a dictionary only for
    ``bucket`` and ``cluster``): what the job uploads as ``index/part-KEY.parquet``."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        row_group_size=max(1, table.num_rows),
        write_statistics=True,
        use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in table.column_names],
    )
    return sink.getvalue()


def read_index(source: Any, columns: list[str] | None = None) -> pa.Table:
    """An index part (a path, a file object or bytes) as a Table of ``columns`` (all when
    None); only those column chunks are read."""
    import pyarrow.parquet as pq

    if isinstance(source, bytes | bytearray | memoryview):
        source = pa.BufferReader(source)
    return pq.read_table(source, columns=columns)
