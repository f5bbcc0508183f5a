"""The manifest: build it, write it last and atomically, read and check it."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from .errors import (
    DatasetNotFoundError,
    IncompleteDatasetError,
    ManifestError,
    NotADatasetError,
)
from .paths import MANIFEST_NAME, RUN_MARKER_NAME, SHARDS_DIR
from .version import FORMAT_VERSION, SUPPORTED_FORMAT_VERSIONS, gradum_version

REQUIRED_KEYS = ("format_version", "counts", "shards")


def build_manifest(
    shards: list[dict[str, Any]],
    *,
    counts: dict[str, int] | None = None,
    signals: list[dict[str, Any]] | None = None,
    stats: dict[str, dict[str, Any]] | None = None,
    clusters: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a manifest dict. ``counts`` defaults to all rows written, no dead letters."""
    written = sum(int(s["rows"]) for s in shards)
    if counts is None:
        counts = {"input": written, "written": written, "dead_letter": 0}
    return {
        "format_version": FORMAT_VERSION,
        "gradum_version": gradum_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": dict(options or {}),
        "counts": dict(counts),
        "shards": [dict(s) for s in shards],
        "signals": list(signals or []),
        "stats": dict(stats or {}),
        "clusters": clusters,
    }


def write_manifest(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``OUT/manifest.json`` atomically (tmp file, fsync, rename). Call it LAST.

    Missing ``format_version``, ``gradum_version`` and ``created`` are filled in.
    Returns the manifest path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = manifest_json(manifest)
    final = out / MANIFEST_NAME
    tmp = out / f".{MANIFEST_NAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(out)
    return final


def manifest_json(manifest: dict[str, Any]) -> str:
    """The manifest's text: missing ``format_version``, ``gradum_version`` and ``created``
    filled in, required keys checked, no NaN (strict JSON)."""
    data = dict(manifest)
    data.setdefault("format_version", FORMAT_VERSION)
    data.setdefault("gradum_version", gradum_version())
    data.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ManifestError(f"manifest lacks required key {key!r}")
    return json.dumps(data, indent=2, allow_nan=False, default=_json_default) + "\n"


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check the manifest of dataset ``path``.

    Raises:
        DatasetNotFoundError, NotADatasetError, IncompleteDatasetError, ManifestError.
    """
    root = Path(path)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: no such file or directory")
    if not root.is_dir():
        raise NotADatasetError(f"{root}: not a gradum dataset (not a directory)")
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        if (root / SHARDS_DIR).is_dir() or (root / RUN_MARKER_NAME).is_file():
            raise IncompleteDatasetError(
                f"{root}: incomplete dataset: {MANIFEST_NAME} is missing (the job that wrote "
                "it did not finish; the manifest is written last; `gradum score ... --resume` "
                "continues it)"
            )
        raise NotADatasetError(f"{root}: not a gradum dataset (no {MANIFEST_NAME}, no shards/)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{mpath}: unreadable manifest: {e}") from e
    check_manifest(manifest, mpath)
    return manifest


def check_manifest(manifest: Any, where: str | os.PathLike = MANIFEST_NAME) -> None:
    """Raise ManifestError if required keys are missing or the format version is unknown."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: manifest is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ManifestError(f"{where}: manifest lacks key(s) {', '.join(missing)}")
    fv = manifest["format_version"]
    if fv not in SUPPORTED_FORMAT_VERSIONS:
        raise ManifestError(
            f"{where}: unknown format_version {fv!r} (this gradum reads "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}); upgrade gradum"
        )
    if not isinstance(manifest["shards"], list):
        raise ManifestError(f"{where}: 'shards' is not a list")
    for i, s in enumerate(manifest["shards"]):
        if not isinstance(s, dict) or not {"path", "rows"} <= s.keys():
            raise ManifestError(f"{where}: shards[{i}] lacks 'path' or 'rows'")


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
