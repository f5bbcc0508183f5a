"""The Arrow row schema of the shards, and the metadata columns passed through."""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
import pyarrow as pa

RESERVED = {
    "id",
    "text",
    "source",
    "embedding",
    "cluster",
    "centroid_distance",
    "difficulty",
    "bucket",
}


def meta_column(key: str, signal_columns: set[str]) -> str:
    """Column name of a passthrough field: renamed ``meta_KEY`` where it would collide."""
    return f"meta_{key}" if key in RESERVED or key in signal_columns else key


class MetaSchemaCombineFn(beam.CombineFn):
    """Union of passthrough field types over scored batches (``{"records": ...}``) -> one Arrow type per field.

    bool -> bool; int -> int64; int and float -> float64; str -> string; any other mix ->
    string (non-strings written as JSON). Combining is a set union: order-free.
    """

    def create_accumulator(self) -> dict[str, set[str]]:
        return {}

    def add_input(self, acc: dict[str, set[str]], batch: dict) -> dict[str, set[str]]:
        for record in batch["records"]:
            for k, v in record["meta"].items():
                acc.setdefault(k, set()).add(type(v).__name__)
        return acc

    def merge_accumulators(self, accs):
        out: dict[str, set[str]] = {}
        for acc in accs:
            for k, v in acc.items():
                out.setdefault(k, set()).update(v)
        return out

    def extract_output(self, acc: dict[str, set[str]]) -> dict[str, str]:
        types = {}
        for key in sorted(acc):
            kinds = acc[key] - {"NoneType"}
            if kinds == {"bool"}:
                types[key] = "bool"
            elif kinds == {"int"}:
                types[key] = "int64"
            elif kinds and kinds <= {"int", "float"}:
                types[key] = "float64"
            else:
                types[key] = "string"
        return types


_ARROW = {"bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}


def convert_meta(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "string" and not isinstance(value, str):
        return json.dumps(value)
    if kind == "float64":
        return float(value)
    return value


def row_schema(
    meta_types: dict[str, str],
    signal_columns: list[str],
    *,
    clusters: bool,
    embedding_dim: int | None,
) -> pa.Schema:
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("source", pa.string()),
    ]
    names = set(signal_columns)
    fields += [pa.field(meta_column(k, names), _ARROW[t]) for k, t in meta_types.items()]
    fields += [pa.field(c, pa.float32()) for c in signal_columns]
    if embedding_dim:
        fields.append(pa.field("embedding", pa.list_(pa.float32(), embedding_dim)))
    if clusters:
        # centroid_distance is a signal column (it takes part in difficulty), listed above.
        fields.append(pa.field("cluster", pa.int32()))
    fields += [pa.field("difficulty", pa.float32()), pa.field("bucket", pa.int16())]
    return pa.schema(fields)
