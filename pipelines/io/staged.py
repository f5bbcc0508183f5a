"""The staging format: one part's scored rows as one Arrow IPC *file* (random access).

Columns: ``id``, ``text``, ``source``, ``position``, one float64 column per signal, the
embedding (fixed-size list of float32) when one was computed, then each passthrough metadata
field as ``meta:<field>``, typed by the rule of :mod:`pipelines.io.metadata` over *this
part's* values (a field a part holds as ``int64`` may be ``float64`` or JSON text over the
whole corpus; :func:`meta_column` converts when the shard is written). Rows are in input
order (by position).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.io import metadata

META_PREFIX = "meta:"


def meta_values(records: list[dict]) -> dict[str, list[Any]]:
    """Every metadata field of ``records`` -> its value in each record (None where absent)."""
    fields: set[str] = set()
    for record in records:
        fields.update(record["meta"])
    return {f: [r["meta"].get(f) for r in records] for f in sorted(fields)}


def value_kinds(values: list[Any]) -> set[str]:
    """The union of the kinds (:func:`pipelines.io.metadata.tags`) of a field's values,
    computed once per distinct value when the values are hashable."""
    try:
        distinct = set(values)
    except TypeError:  # lists or objects among them
        distinct = values
    kinds: set[str] = set()
    for v in distinct:
        kinds |= metadata.tags(v)
    return kinds


def meta_kinds(records: list[dict]) -> dict[str, set[str]]:
    """Every metadata field of ``records`` -> the union of its values' kinds."""
    return {f: value_kinds(v) for f, v in meta_values(records).items()}


def _encode(values: list[Any], kind: str) -> pa.Array:
    if kind == "json":
        return pa.array(
            [
                None if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)
                for v in values
            ],
            pa.string(),
        )
    return pa.array(values, metadata.ARROW[kind])


def staged_table(
    records: list[dict],
    columns: dict[str, np.ndarray],
    signal_columns: list[str],
    kinds: dict[str, set[str]],
    values: dict[str, list[Any]] | None = None,
) -> pa.Table:
    """Records and their scores -> the staged table, sorted by position. Each metadata
    column's field metadata ``kind`` says how this part stored it; ``values`` are the
    metadata values by field (:func:`meta_values`), when already gathered."""
    positions = np.fromiter((r["position"] for r in records), dtype=np.int64, count=len(records))
    order = np.argsort(positions, kind="stable")
    records = [records[i] for i in order.tolist()]
    arrays: list[pa.Array] = [
        pa.array([r["id"] for r in records], pa.string()),
        pa.array([r["text"] for r in records], pa.large_string()),
        pa.array([r["source"] for r in records], pa.string()),
        pa.array(positions[order]),
    ]
    fields = [
        pa.field("id", pa.string()),
        pa.field("text", pa.large_string()),
        pa.field("source", pa.string()),
        pa.field("position", pa.int64()),
    ]
    for c in signal_columns:
        arrays.append(pa.array(np.asarray(columns[c], dtype=np.float64)[order]))
        fields.append(pa.field(c, pa.float64()))
    if "embedding" in columns:
        emb = np.ascontiguousarray(np.asarray(columns["embedding"], dtype=np.float32)[order])
        dim = emb.shape[1] if emb.ndim == 2 else 0
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim))
        fields.append(pa.field("embedding", arrays[-1].type))
    ordered = order.tolist()
    for name in sorted(kinds):
        kind = metadata.storage(kinds[name])
        field_values = (
            [values[name][i] for i in ordered] if values else [r["meta"].get(name) for r in records]
        )
        arrays.append(_encode(field_values, kind))
        fields.append(pa.field(META_PREFIX + name, arrays[-1].type, metadata={"kind": kind}))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def meta_column(table: pa.Table, name: str, kind: str) -> pa.Array:
    """Metadata field ``name`` of a staged table as the corpus-wide column type ``kind``
    (nulls where this part never had the field). Widening is exact: the corpus-wide kind is
    chosen so that it is (an int64 part of a float64 field holds no integer past 2**53)."""
    column_name = META_PREFIX + name
    target = metadata.ARROW[kind]
    if column_name not in table.column_names:
        return pa.nulls(table.num_rows, target)
    field = table.schema.field(column_name)
    local = (field.metadata or {}).get(b"kind", b"").decode()
    column = table[column_name].combine_chunks()
    if local == kind:
        return column
    if kind == "json":  # this part's values, as JSON text
        return _encode(column.to_pylist(), "json")
    return column.cast(target)


def write_ipc_file(table: pa.Table) -> pa.Buffer:
    """``table`` as an Arrow IPC file (random access), in memory."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_ipc_file(source: Any, columns: list[str] | None = None) -> pa.Table:
    """A staged table from a path (memory-mapped) or bytes."""
    if isinstance(source, str):
        source = pa.memory_map(source)
    elif isinstance(source, bytes | bytearray | memoryview):
        source = pa.BufferReader(source)
    table = pa.ipc.open_file(source).read_all()
    return table.select(columns) if columns else table
