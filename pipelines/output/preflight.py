"""The output location, checked and cleared before any worker starts; what the manifest may
record of the job's options.

:func:`prepare_output` runs in the launcher, on the same storage the workers write
(``pipelines.io.storage``): a local directory or a bucket prefix. It refuses, in one line and with
nothing written, an unreachable or missing bucket, an output it may not write, a prefix
holding objects that are not a gradum dataset, and a committed dataset without
``--overwrite``; then it clears what an earlier, unfinished run left.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pipelines.io import storage as fs

# Top-level names a gradum dataset may hold (anything else is foreign and is never deleted).
OURS = frozenset(
    {
        "manifest.json",
        "shards",
        "dead_letter",
        "centroids.npy",
        "staging",
        "reference_lm",
        "report.html",
        "gradum.log",
    }
)
LEFTOVERS = ("shards", "dead_letter", "centroids.npy", "staging", "reference_lm", "report.html")
PROBE = ".gradum-write-probe"
PREFLIGHT_TIMEOUT_S = float(os.environ.get("GRADUM_PREFLIGHT_TIMEOUT", "60"))

# Beam options a manifest records; everything else (keys, tokens, endpoints) stays out.
RECORDED_BEAM_OPTIONS = (
    "runner",
    "direct_num_workers",
    "direct_running_mode",
    "environment_type",
    "project",
    "region",
    "worker_region",
    "worker_zone",
    "job_name",
    "num_workers",
    "max_num_workers",
    "autoscaling_algorithm",
    "machine_type",
    "worker_machine_type",
    "disk_size_gb",
    "sdk_container_image",
    "number_of_worker_harness_threads",
)

T = TypeVar("T")


class OutputError(Exception):
    """The output cannot be used; the message is one line a user can act on."""


def recorded_options(all_options: dict[str, Any]) -> dict[str, Any]:
    """The allow-listed Beam options, for the manifest."""
    return {k: all_options[k] for k in RECORDED_BEAM_OPTIONS if all_options.get(k) is not None}


def prepare_output(out: str, overwrite: bool) -> None:
    """Check ``out`` and clear an unfinished run's leftovers (see the module docstring)."""
    names = _bounded(lambda: _top_level_names(out), out, "list")
    if "manifest.json" in names and not overwrite:
        raise OutputError(f"{out} already holds a complete dataset; pass --overwrite to replace it")
    foreign = sorted(n for n in names if n not in OURS and not n.startswith("."))
    if foreign:
        raise OutputError(
            f"{out} holds objects that are not a gradum dataset ({', '.join(foreign[:3])}); "
            "choose an empty or new location"
        )
    probe = fs.join(out, PROBE)
    _bounded(lambda: fs.write_bytes(probe, b"gradum"), out, "write to")
    fs.delete([probe])
    if "manifest.json" in names:
        fs.delete([fs.join(out, "manifest.json")])  # from here on the old dataset is incomplete
    for name in LEFTOVERS:
        if name in names:
            fs.delete_prefix(fs.join(out, name))
    if not fs.is_remote(out):
        # shards/ marks a local directory as a (so far incomplete) gradum dataset.
        os.makedirs(os.path.join(out, "shards"), exist_ok=True)


def _top_level_names(out: str) -> set[str]:
    if not fs.is_remote(out):
        if os.path.exists(out) and not os.path.isdir(out):
            raise OutputError(f"{out} is a file, not a directory")
        return set(os.listdir(out)) if os.path.isdir(out) else set()
    prefix = out.rstrip("/") + "/"
    return {p[len(prefix) :].split("/", 1)[0] for p, _ in fs.list_prefix(out)}


def _bounded(call: Callable[[], T], out: str, verb: str) -> T:
    """``call()``, turned into a one-line :class:`OutputError` when it fails or hangs (object
    store clients retry an unreachable endpoint for minutes)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(PREFLIGHT_TIMEOUT_S)
    if thread.is_alive():
        raise OutputError(
            f"cannot {verb} {out}: no answer in {PREFLIGHT_TIMEOUT_S:g} s (is the endpoint "
            "reachable?)"
        )
    if "error" in result:
        exc = result["error"]
        if isinstance(exc, OutputError):
            raise exc
        raise OutputError(f"cannot {verb} {out}: {_reason(exc)}") from None
    return result.get("value")


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "NoSuchBucket" in text or "404" in text or "NotFound" in text:
        return "the bucket does not exist"
    if any(s in text for s in ("AccessDenied", "403", "Forbidden", "PermissionDenied")):
        return "permission denied (no write access)"
    if any(s in text for s in ("Connection refused", "ConnectionError", "EndpointConnection")):
        return "the storage endpoint cannot be reached"
    return text.splitlines()[0][:300]


def stage_reference_lm(local_dir: str, out: str) -> str:
    """Put a trained reference LM under ``OUT/reference_lm`` (uploaded when ``out`` is a
    bucket) and return that path, which the workers load the model from."""
    target = fs.join(out, "reference_lm")
    if fs.is_remote(out):
        fs.upload_dir(local_dir, target)
    return target
