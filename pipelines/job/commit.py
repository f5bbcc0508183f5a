"""The job's last writes: dead-letter files, centroids, then the manifest (the commit point).

``manifest.json`` is one object written last, after the accounting check
(``input == written + dead_letter``) and the dead-letter budget; on an object store it is a
single upload, on a local disk a rename. ``staging/`` is deleted after it.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from pipelines.io import storage as fs
from pipelines.io.records import stable_hash
from pipelines.job.stage import STAGING

DEAD_LETTER_FILES = 4  # files per stage; dead letters are keyed over them by source/position


class DeadLetterFractionError(RuntimeError):
    """Too many inputs were rejected: the job fails and writes no manifest."""


def dead_letter_key(d: dict) -> tuple[int, dict]:
    return stable_hash(f"{d['source']}\0{d['position']}") % DEAD_LETTER_FILES, d


def write_dead_letters(element, out_dir: str, stage: str) -> dict[str, Any]:
    """``(file index, dead letters)`` of one stage -> ``dead_letter/STAGE-NNNNN.jsonl``,
    sorted by source and position."""
    from shards.dead_letter import dead_letter_line
    from shards.paths import DEAD_LETTER_DIR

    index, items = element
    items = sorted(items, key=lambda d: (d["source"], d["position"], d["stage"]))
    lines = [
        dead_letter_line(
            d["reason"],
            {"source": d["source"], "position": d["position"], "record": d["payload"]},
            stage=d["stage"],
        )
        for d in items
    ]
    rel = f"{DEAD_LETTER_DIR}/{stage}-{index:05d}.jsonl"
    fs.write_bytes(fs.join(out_dir, *rel.split("/")), "".join(lines).encode("utf-8"))
    return {"path": rel, "rows": len(lines)}


def finalize(
    _,
    shard_infos: list,
    n_input: int,
    sketches: dict,
    rank_sketches: dict,
    cluster_model: Any,
    proxy_model: Any,
    *dead_lists: list,
    out_dir: str,
    signals: list,
    options: dict,
    plan: dict,
    max_dead_fraction: float,
) -> str:
    """Check the accounting and the dead-letter budget, write the manifest LAST, then delete
    ``staging/``. The arguments after the first are Beam side inputs: the shard infos, the
    input count, the value sketches, the rank sketches, the k-means model and the proxy model
    (or None) and each stage's dead-letter file infos."""
    from shards.manifest import build_manifest, manifest_json
    from shards.paths import CENTROIDS_NAME, MANIFEST_NAME

    dead_infos = [d for infos in dead_lists for d in infos]
    written = sum(int(s["rows"]) for s in shard_infos)
    dead = sum(int(d["rows"]) for d in dead_infos)
    if n_input != written + dead:
        raise RuntimeError(
            f"accounting error: input {n_input} != written {written} + "
            f"dead letter {dead}; no manifest written"
        )
    if n_input and dead / n_input > max_dead_fraction:
        raise DeadLetterFractionError(
            f"{dead} of {n_input} records ({dead / n_input:.2%}) were dead-lettered, over "
            f"--max-dead-letter-fraction={max_dead_fraction:g}; see {out_dir}/dead_letter/. "
            "No manifest was written."
        )
    clusters = None
    if cluster_model:
        buffer = io.BytesIO()
        np.save(buffer, cluster_model["centroids"])
        fs.write_bytes(fs.join(out_dir, CENTROIDS_NAME), buffer.getvalue())
        clusters = dict(cluster_model["info"], centroids=CENTROIDS_NAME)
    manifest = build_manifest(
        sorted(shard_infos, key=lambda s: s["path"]),
        counts={"input": n_input, "written": written, "dead_letter": dead},
        signals=signals,
        stats={c: _stats(s, rank_sketches.get(c)) for c, s in sorted(sketches.items())},
        clusters=clusters,
        options=options,
    )
    manifest["plan"] = plan
    if proxy_model:
        manifest["proxy"] = proxy_model["info"]
    manifest["dead_letter_files"] = sorted(dead_infos, key=lambda d: d["path"])
    text = manifest_json(json.loads(json.dumps(manifest, default=str)))
    path = fs.join(out_dir, MANIFEST_NAME)
    fs.write_bytes(path, text.encode("utf-8"))
    fs.delete_prefix(fs.join(out_dir, STAGING))
    return path


def _stats(sketch, rank_sketch) -> dict[str, Any]:
    stats = sketch.stats()
    if rank_sketch is not None:
        stats["ranks"] = rank_sketch.describe()
    return stats
