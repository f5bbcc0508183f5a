"""What gradum may delete under an output: only objects it can prove it wrote.

Proof is one of two records the job itself writes:

- the **run marker** ``OUT/run.json``, written before anything else of a run: its run id, when
  it started, the fingerprint of its configuration and inputs, and the patterns of every object
  the run may create (``staging/<run id>/``, ``shards/part-*.arrow``, ...);
- the **manifest** ``OUT/manifest.json``, written last: every shard, index part, dead-letter
  file, the centroids and the extra outputs (the demo's report) by name.

Anything else under ``OUT`` is the user's: it is never deleted, and a job refuses to start
beside it (``foreign``). The job's log ``OUT/gradum.log`` is appended to and never deleted.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

MARKER_NAME = "run.json"
MANIFEST_NAME = "manifest.json"
LOG_NAME = "gradum.log"
PROBE_NAME = ".gradum-write-probe"
STAGING = "staging"

# Objects every run may create (relative to OUT); a trailing "/" is a whole prefix.
_RUN_OBJECTS = (
    MARKER_NAME,
    MANIFEST_NAME,
    "shards/part-*.arrow",
    "index/part-*.parquet",
    "dead_letter/part-*.jsonl",
    "centroids.npy",
)


def new_run_id() -> str:
    """A run id: UTC time and 6 random hex digits (``20261203T101500Z-1a2b3c``)."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


def _with_local_temporaries(patterns: list[str]) -> list[str]:
    """Each file pattern and the hidden temporary name a local write uses for it
    (``dir/.name.tmp-PID``, see ``pipelines.io.storage.write_bytes``)."""
    out = []
    for p in patterns:
        out.append(p)
        if not p.endswith("/"):
            head, _, name = p.rpartition("/")
            out.append(f"{head}/.{name}.tmp-*" if head else f".{name}.tmp-*")
    return out


@dataclass
class RunMarker:
    """The content of ``OUT/run.json``."""

    run_id: str
    started: str
    fingerprint: dict[str, str]
    creates: list[str] = field(default_factory=list)

    @classmethod
    def new(
        cls, fingerprint: dict[str, str], extra: tuple[str, ...] = (), run_id: str | None = None
    ) -> RunMarker:
        run_id = run_id or new_run_id()
        patterns = [*_RUN_OBJECTS, f"{STAGING}/{run_id}/", *extra]
        return cls(
            run_id=run_id,
            started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            fingerprint=dict(fingerprint),
            creates=_with_local_temporaries(patterns),
        )

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunMarker:
        raw = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("run_id"), str):
            raise ValueError("not a gradum run marker")
        return cls(
            run_id=raw["run_id"],
            started=str(raw.get("started", "")),
            fingerprint=dict(raw.get("fingerprint") or {}),
            creates=[str(p) for p in raw.get("creates") or []],
        )

    def owns(self, rel: str) -> bool:
        return any(_matches(rel, p) for p in self.creates)


def _matches(rel: str, pattern: str) -> bool:
    if pattern.endswith("/"):
        return rel.startswith(pattern)
    # fnmatch's * crosses "/": patterns are anchored per path segment count instead.
    return rel.count("/") == pattern.count("/") and fnmatch.fnmatchcase(rel, pattern)


def manifest_objects(manifest: dict[str, Any], out: str) -> tuple[set[str], list[str]]:
    """``(names, prefixes)`` the manifest lists, relative to OUT: shards, index parts,
    dead-letter files, centroids, extra outputs; prefixes end with ``/`` (the reference LM)."""
    names = {MANIFEST_NAME}
    prefixes: list[str] = []
    for shard in manifest.get("shards") or []:
        names.add(str(shard.get("path")))
        index = shard.get("index")
        if isinstance(index, dict) and index.get("path"):
            names.add(str(index["path"]))
    for dead in manifest.get("dead_letter_files") or []:
        names.add(str(dead.get("path")))
    clusters = manifest.get("clusters") or {}
    if clusters.get("centroids"):
        names.add(str(clusters["centroids"]))
    outputs = manifest.get("outputs")
    if isinstance(outputs, dict):
        names.update(str(n) for n in outputs.get("files") or [])
        prefixes.extend(str(p) for p in outputs.get("prefixes") or [])
    else:  # a dataset of gradum 0.2 or earlier: what its demo and --lm reference wrote
        names.add("report.html")
        for signal in manifest.get("signals") or []:
            model = ((signal.get("params") or {}).get("params") or {}).get("model")
            if isinstance(model, str) and model.rstrip("/").endswith("reference_lm"):
                prefixes.append("reference_lm/")
    return names, prefixes


def classify(
    rels: list[str], manifest: dict[str, Any] | None, marker: RunMarker | None, out: str
) -> tuple[list[str], list[str]]:
    """Split the objects under OUT (relative names) into ``(ours, foreign)``; the log and
    the write probe are neither (kept, and allowed)."""
    names, prefixes = manifest_objects(manifest, out) if manifest else (set(), [])
    ours, foreign = [], []
    for rel in rels:
        if rel in (LOG_NAME, PROBE_NAME):
            continue
        mine = (
            rel in names
            or any(rel.startswith(p) for p in prefixes)
            or (marker is not None and marker.owns(rel))
        )
        (ours if mine else foreign).append(rel)
    return ours, foreign
