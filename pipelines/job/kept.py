"""A part's kept columns: the signal columns of the rows it will write, as one scratch object.

:class:`pipelines.job.write.KeptColumns` writes ``staging/<run>/kept/part-<key>.arrow`` (an
Arrow IPC file of float64 columns, 8 bytes per row and signal) and hands on a reference of a
few hundred bytes: ``{"key", "kept": {"path", "sha256", "rows"}}``. Rank passes 0 and 1 read
the object back, checked against that sha256, one part at a time. So no per-record column
crosses the runner between the steps: a local runner's bundles of references stay small
whatever N, and a worker holds one part's columns at a time. The commit's clearing step
deletes the object with the part's other scratch objects.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from pipelines.io import storage as fs
from pipelines.io.staged import read_ipc_file, write_ipc_file

KEPT = "kept"


def kept_path(staging: str, key: str) -> str:
    return fs.join(staging, KEPT, f"part-{key}.arrow")


def write_kept(staging: str, key: str, columns: dict[str, np.ndarray]) -> dict:
    """Write part ``key``'s kept ``columns`` (equal lengths); return their reference."""
    table = pa.table({c: np.asarray(v, dtype=np.float64) for c, v in columns.items()})
    data = write_ipc_file(table)
    path = kept_path(staging, key)
    fs.write_bytes(path, memoryview(data), durable=False)  # checked by its sha256 when read
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "rows": table.num_rows}


def read_kept(ref: dict) -> dict[str, np.ndarray]:
    """The columns a :func:`write_kept` reference names; an error when the object is not the
    one written (a changed or torn scratch object is never misread as data)."""
    data = fs.read_bytes(ref["path"])
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise RuntimeError(f"{ref['path']}: its sha256 differs from the one written with it")
    table = read_ipc_file(data)
    return {c: table[c].to_numpy() for c in table.column_names}
