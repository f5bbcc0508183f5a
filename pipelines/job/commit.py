"""The job's last steps: check, clear staging, write the manifest (the commit point).

1. **Check** (one element, side inputs of sums): ``input == written + dead_letter`` and the
   dead-letter budget. A failure stops the job before anything is deleted, so ``--resume``
   still has every finished part.
2. **Clear staging**: each part's staging object, summary and kept object are deleted by a worker, in
   parallel, by name (no listing); then the few plan objects.
3. **Manifest**: centroids, then ``manifest.json``, one object written last, listing every
   shard, index part and dead-letter file: what it lists is what gradum may later delete.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any

import numpy as np

from pipelines.io import storage as fs
from pipelines.job.failfast import DeadLetterFractionError
from pipelines.job.kept import kept_path
from pipelines.job.summary import summary_path


def check(
    _,
    staged: tuple[int, int, int],
    written: tuple[int],
    repeated: tuple[int],
    extra: tuple[int] = (0,),
    *,
    out_dir: str,
    max_dead_fraction: float,
) -> dict[str, int]:
    """The manifest's counts, once they balance and the budget holds. ``staged``: records
    read, dead-lettered before the shard step and parts reused, summed over the parts;
    ``written`` and ``repeated``: rows written and repeated ids dead-lettered; ``extra``:
    records dead-lettered before they reached a part (``WriteShards``' input dead letters)."""
    (n_input, dead_staged, _), (written,), (dead_repeated,) = staged, written, repeated
    n_input += extra[0]
    dead = dead_staged + dead_repeated + extra[0]
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
    return {"input": n_input, "written": written, "dead_letter": dead}


def clear_part(info: dict, _checked: dict, *, staging: str) -> int:
    """Delete one part's staging object, summary and kept object (best effort: a leftover is listed by
    the run marker, and ``--overwrite`` removes it)."""
    try:
        fs.delete(
            [
                info["staging"]["path"],
                summary_path(staging, info["key"]),
                kept_path(staging, info["key"]),
            ]
        )
    except Exception:  # noqa: BLE001 - never fail a finished job over its scratch space
        return 0
    return 1


def finalize(
    _,
    shard_infos: list,
    counts: dict,
    sketches: dict,
    rank_sketches: dict,
    cluster_model: Any,
    proxy_model: Any,
    _cleared: int,
    staged: tuple[int, int, int],
    runtime: dict,
    *dead_lists: list,
    out_dir: str,
    staging: str,
    signals: list,
    options: dict,
    plan: dict,
    outputs: dict,
) -> str:
    """Write the centroids and the manifest LAST. The arguments after the first are Beam side
    inputs: the shard entries, the counts, the value and rank sketches, the k-means and proxy
    models (or None), the number of parts cleared, the staged counts (parts reused from a
    killed run among them), what the workers' models ran on, and the dead-letter files."""
    from shards.manifest import build_manifest, manifest_json
    from shards.paths import CENTROIDS_NAME, MANIFEST_NAME

    _clear_prefix(staging)
    dead_infos = [d for infos in dead_lists for d in infos]
    clusters = None
    if cluster_model:
        buffer = io.BytesIO()
        np.save(buffer, cluster_model["centroids"])
        fs.write_bytes(fs.join(out_dir, CENTROIDS_NAME), buffer.getvalue())
        clusters = dict(cluster_model["info"], centroids=CENTROIDS_NAME)
    manifest = build_manifest(
        sorted(shard_infos, key=lambda s: s["path"]),
        counts=counts,
        signals=signals,
        stats={c: _stats(s, rank_sketches.get(c)) for c, s in sorted(sketches.items())},
        clusters=clusters,
        options=options,
    )
    manifest["plan"] = plan
    manifest["outputs"] = outputs
    manifest["resume"] = {"reused_parts": int(staged[2])}
    manifest["workers"] = runtime  # how each model ran where it ran, with the rows it scored
    if proxy_model:
        manifest["proxy"] = proxy_model["info"]
    manifest["dead_letter_files"] = sorted(dead_infos, key=lambda d: d["path"])
    text = manifest_json(json.loads(json.dumps(manifest, default=str)))
    path = fs.join(out_dir, MANIFEST_NAME)
    fs.write_bytes(path, text.encode("utf-8"))
    return path


def _clear_prefix(staging: str) -> None:
    """What is left of the run's staging prefix once every part cleared its own: the plan
    objects (a few), and locally the empty directories (``rmdir`` refuses any that is not)."""
    fs.delete([p for p, _ in fs.list_prefix(fs.join(staging, "plan"))])
    if fs.is_remote(staging):
        return
    for root, _dirs, _files in os.walk(staging, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(root)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(staging))


def _stats(sketch, rank_sketch) -> dict[str, Any]:
    stats = sketch.stats()
    if rank_sketch is not None:
        stats["ranks"] = rank_sketch.describe()
    return stats
