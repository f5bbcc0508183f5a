"""The Arrow row schema of the shards, and the metadata field types (see ``pipelines.io.metadata``
for the rule that gives each passthrough field its column)."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from pipelines.io import metadata

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


def meta_columns(meta_types: dict[str, str], signal_columns: list[str]) -> dict[str, str]:
    """Passthrough field -> its column name (renamed where it would collide)."""
    return metadata.column_names(list(meta_types), RESERVED | set(signal_columns))


class MetaSchemaCombineFn(beam.CombineFn):
    """Each part's metadata field kinds (``{field: [tags]}``) -> one column type per field
    (:func:`pipelines.io.metadata.storage`). Combining is a set union: order-free."""

    def create_accumulator(self) -> dict[str, set[str]]:
        return {}

    def add_input(self, acc: dict[str, set[str]], kinds: dict) -> dict[str, set[str]]:
        for k, v in kinds.items():
            acc.setdefault(k, set()).update(v)
        return acc

    def merge_accumulators(self, accs):
        out: dict[str, set[str]] = {}
        for acc in accs:
            for k, v in acc.items():
                out.setdefault(k, set()).update(v)
        return out

    def extract_output(self, acc: dict[str, set[str]]) -> dict[str, str]:
        return {key: metadata.storage(acc[key]) for key in sorted(acc)}


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
    names = meta_columns(meta_types, signal_columns)
    fields += [pa.field(names[k], metadata.ARROW[t]) for k, t in meta_types.items()]
    fields += [pa.field(c, pa.float32()) for c in signal_columns]
    if embedding_dim:
        fields.append(pa.field("embedding", pa.list_(pa.float32(), embedding_dim)))
    if clusters:
        # centroid_distance is a signal column (it takes part in difficulty), listed above.
        fields.append(pa.field("cluster", pa.int32()))
    fields += [pa.field("difficulty", pa.float32()), pa.field("bucket", pa.int16())]
    return pa.schema(fields)
