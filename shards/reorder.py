"""``gradum shards reorder SRC DST``: rewrite a dataset laid out for locality.

A job writes rows in input order, hashed over shards, so any batch of G rows touches about G
shards. Reordered by difficulty, the rows of a curriculum's eligible set (the easiest
fraction c(t)) fill the first ceil(c N / R) shards, and a sampler that serves a few shards at
a time (``Curriculum(..., blocks=w)``) touches w shards per batch.

Sort keys (``by``): ``difficulty`` (ascending, records without one last), ``bucket``,
``cluster``, in the order given, ties kept in the source's row order (a stable sort). Every
output shard but the last holds exactly ``rows_per_shard`` rows, so shard k holds positions
[k R, (k + 1) R) of the new order; with ``by=("difficulty",)`` that order is the sampler's
difficulty order itself.

The new manifest keeps the source's counts (input = written + dead_letter), signals, stats,
clusters and options, lists the new shards with their index parts, and records
``"layout": {"by", "rows_per_shard", "source", "source_created"}``. Every other file of the
source (dead letters, centroids, a reference model) is copied. The manifest is written last.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ShardsError
from .index import BASE_COLUMNS
from .manifest import manifest_json
from .paths import INDEX_DIR, MANIFEST_NAME, SHARDS_DIR
from .reader import ShardSet
from .storage_options import StorageOptions, is_remote
from .writer import ShardWriter

KEYS = ("difficulty", "bucket", "cluster")
_SKIP = (MANIFEST_NAME, f"{SHARDS_DIR}/", f"{INDEX_DIR}/", "staging/", ".")


def layout_order(ss: ShardSet, by: Sequence[str]) -> np.ndarray:
    """Row order sorting by the ``by`` columns (stable; NaN last), read from the index."""
    if not by:
        raise ValueError("reorder: give at least one sort key")
    bad = [k for k in by if k not in KEYS]
    if bad:
        raise ValueError(f"reorder: cannot sort by {bad}; keys are {', '.join(KEYS)}")
    missing = [k for k in by if not ss.has_column(k)]
    if missing:
        raise ValueError(f"reorder: the dataset has no {', '.join(missing)} column")
    keys = [np.asarray(ss.column(k)) for k in reversed(by)]  # lexsort: last key is primary
    return np.lexsort(keys) if len(keys) > 1 else np.argsort(keys[0], kind="stable")


def reorder(
    src: ShardSet,
    dst: str,
    by: Sequence[str] = ("difficulty",),
    rows_per_shard: int | None = None,
    storage: StorageOptions | None = None,
) -> dict[str, Any]:
    """Write ``src`` to ``dst`` (a new local directory or bucket prefix) sorted by ``by``;
    return the new manifest.

    Raises:
        ValueError: bad keys or ``rows_per_shard``, a missing column, or ``dst`` not empty.
    """
    if str(dst).rstrip("/") == src.location.rstrip("/"):
        raise ValueError("reorder: the output must differ from the input")
    n = src.num_rows
    R = int(rows_per_shard or max(1, round(n / max(1, src.num_shards))))
    if R < 1:
        raise ValueError(f"reorder: rows_per_shard must be >= 1, got {rows_per_shard!r}")
    out = _Output(str(dst), storage)
    order = layout_order(src, by)
    signals = [c for c in src.index_columns if c not in BASE_COLUMNS] if src.has_index else None
    entries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gradum-reorder-") as tmp:
        local = Path(tmp) if out.remote else Path(dst)
        with ShardWriter(
            local, src.schema, max_rows=R, max_bytes=1 << 62, signal_columns=signals
        ) as w:
            for start in range(0, n, R):
                w.write(src.take(order[start : start + R]))
                w.rotate()
                out.publish(local, w.shards[len(entries) :])
                entries = list(w.shards)
        if not entries:
            w.close()
            out.publish(local, w.shards)
            entries = list(w.shards)
    _copy_rest(src, out)
    manifest = dict(src.manifest)
    manifest["shards"] = entries
    manifest["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest["layout"] = {
        "by": list(by),
        "rows_per_shard": R,
        "source": src.location,
        "source_created": src.manifest.get("created"),
    }
    out.write(MANIFEST_NAME, manifest_json(manifest).encode())
    return manifest


class _Output:
    """Where reorder writes: a new local directory, or a bucket prefix (objects uploaded once,
    under their final names)."""

    def __init__(self, dst: str, storage: StorageOptions | None) -> None:
        self.dst, self.remote = dst.rstrip("/"), is_remote(dst)
        if self.remote:
            import pyarrow.fs as pafs

            self.fs = (storage or StorageOptions()).filesystem(dst)
            self.base = self.dst.split("://", 1)[1]
            found = self.fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True))
            if found:
                raise ValueError(f"reorder: {dst} is not empty; give a new prefix")
        elif os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
            raise ValueError(f"reorder: {dst} exists and is not an empty directory")

    def write(self, rel: str, data: bytes) -> None:
        if self.remote:
            with self.fs.open_output_stream(f"{self.base}/{rel}") as f:
                f.write(data)
            return
        path = Path(self.dst) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def publish(self, local: Path, entries: list[dict[str, Any]]) -> None:
        """Upload finished shards and their index parts (then drop the local copies)."""
        if not self.remote:
            return
        for e in entries:
            for rel in (e["path"], e.get("index", {}).get("path")):
                if rel:
                    self.write(rel, (local / rel).read_bytes())
                    (local / rel).unlink()


def _copy_rest(src: ShardSet, out: _Output) -> None:
    """Copy every file of the source other than the manifest, shards, index and staging."""
    if src.is_remote:
        import pyarrow.fs as pafs

        remote = src._remote
        base = remote.uri.split("://", 1)[1]
        infos = remote.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        rels = [i.path[len(base) + 1 :] for i in infos if i.type == pafs.FileType.File]
        for rel in rels:
            if not rel.startswith(_SKIP):
                out.write(rel, remote.read_bytes(rel))
        return
    root = Path(src.location)
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if rel.startswith(_SKIP) or "/." in f"/{rel}":
                continue
            if out.remote:
                out.write(rel, (root / rel).read_bytes())
            else:
                target = Path(out.dst) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / rel, target)


def check_layout(manifest: dict[str, Any]) -> None:
    """Raise ShardsError if a manifest's layout disagrees with its shards (every shard but the
    last must hold ``rows_per_shard`` rows)."""
    layout = manifest.get("layout")
    if not isinstance(layout, dict):
        return
    R = int(layout.get("rows_per_shard", 0))
    rows = [int(s["rows"]) for s in manifest["shards"]]
    if R < 1 or any(r != R for r in rows[:-1]) or (rows and rows[-1] > R):
        raise ShardsError(f"layout: shards do not hold rows_per_shard = {R} rows each")
