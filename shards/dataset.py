"""write_dataset: shards + stats + manifest in one call (tests, small jobs, examples)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from .manifest import build_manifest, write_manifest
from .stats import column_stats
from .writer import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, ShardWriter


def write_dataset(
    out_dir: str | os.PathLike,
    table: pa.Table,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    counts: dict[str, int] | None = None,
    signals: list[dict[str, Any]] | None = None,
    clusters: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    index: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``table`` as a complete dataset under ``out_dir`` and return its manifest.

    Each shard gets its index part (``index=False``: none, as datasets written before the
    index existed). The index holds the scalar signal columns named in ``signals`` (entries'
    ``name`` or ``columns``), or every floating-point column when ``signals`` is None. Stats are
    computed for every numeric column. ``extra`` adds top-level manifest keys (``layout``).
    The manifest is written last.
    """
    signal_columns = None
    if signals is not None:
        signal_columns = []
        for s in signals:
            signal_columns += list(s.get("columns") or [s.get("name")])
    with ShardWriter(
        out_dir,
        table.schema,
        max_rows=max_rows,
        max_bytes=max_bytes,
        index=index,
        signal_columns=signal_columns,
    ) as w:
        w.write(table)
    manifest = build_manifest(
        w.shards,
        counts=counts,
        signals=signals,
        stats=column_stats(table),
        clusters=clusters,
        options=options,
    )
    manifest.update(extra or {})
    write_manifest(Path(out_dir), manifest)
    return manifest
