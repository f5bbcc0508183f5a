"""The output location, checked before any worker starts; what the manifest may record of
the job's options.

:func:`prepare_output` runs in the launcher, on the same storage the workers write
(``pipelines.io.storage``): a local directory or a bucket prefix. It refuses, in one line and
with nothing written, an unreachable or missing bucket, an output it may not write, an output
holding objects gradum did not write (:mod:`pipelines.output.ownership`), a complete dataset
without ``--overwrite`` and an unfinished run without ``--resume`` or ``--overwrite``. Only
then does it delete anything: with ``--overwrite``, the objects the old manifest or run marker
lists, nothing else. It writes the new run marker last and returns it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pipelines.io import storage as fs
from pipelines.output.ownership import MANIFEST_NAME, MARKER_NAME, PROBE_NAME, RunMarker, classify

PREFLIGHT_TIMEOUT_S = float(os.environ.get("GRADUM_PREFLIGHT_TIMEOUT", "60"))
DELETE_THREADS = 16

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


def check_inputs_outside(inputs: list[str], files: list[str], out: str) -> None:
    """Refuse an input spec or input file that lies inside ``out``: the job would write where
    it reads (and, with ``--overwrite``, could delete its own input)."""
    for path in [*inputs, *files]:
        if _inside(path, out):
            raise OutputError(
                f"input {path} lies inside --output {out}; choose an output outside the inputs"
            )


def _inside(path: str, out: str) -> bool:
    if fs.is_remote(path) or fs.is_remote(out):
        if not (fs.is_remote(path) and fs.is_remote(out)):
            return False
        base = out.rstrip("/") + "/"
        return path.rstrip("/") + "/" == base or path.startswith(base)
    base = os.path.abspath(out)
    full = os.path.abspath(path)
    return full == base or full.startswith(base.rstrip(os.sep) + os.sep)


def prepare_output(
    out: str,
    *,
    overwrite: bool,
    resume: bool,
    fingerprint: dict[str, str],
    extra: tuple[str, ...] = (),
    run_id: str | None = None,
) -> tuple[RunMarker, bool]:
    """Check ``out``, delete the old run's objects when ``overwrite`` (only those), write the
    run marker; return ``(marker, resumed)``. See the module docstring."""
    if overwrite and resume:
        raise OutputError("--resume and --overwrite exclude each other: choose one")
    rels = _bounded(lambda: _relative_listing(out), out, "list")
    manifest = _read_json(out, MANIFEST_NAME) if MANIFEST_NAME in rels else None
    marker = None
    if MARKER_NAME in rels:
        try:
            marker = RunMarker.from_json(fs.read_bytes(fs.join(out, MARKER_NAME)))
        except ValueError as exc:
            raise OutputError(f"{out}/{MARKER_NAME} is not a gradum run marker ({exc})") from None
    ours, foreign = classify(rels, manifest, marker, out)
    if foreign:
        raise OutputError(
            f"{out} holds objects gradum did not write ({', '.join(sorted(foreign)[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); gradum never deletes them: move them "
            "or choose another --output"
        )
    if manifest is not None:
        if resume:
            raise OutputError(
                f"{out} already holds a complete dataset: nothing to resume "
                "(--overwrite replaces it)"
            )
        if not overwrite:
            raise OutputError(
                f"{out} already holds a complete dataset; pass --overwrite to replace it"
            )
    elif marker is not None and not overwrite:
        if not resume:
            raise OutputError(
                f"{out} holds an unfinished run ({marker.run_id}, started {marker.started}); "
                "pass --resume to continue it or --overwrite to start again"
            )
        if marker.fingerprint != fingerprint:
            changed = sorted(
                k
                for k in {*fingerprint, *marker.fingerprint}
                if fingerprint.get(k) != marker.fingerprint.get(k)
            )
            raise OutputError(
                f"--resume: the {' and '.join(changed)} differ from the unfinished run "
                f"{marker.run_id}; rerun with its options and inputs, or pass --overwrite"
            )
    elif resume:
        raise OutputError(f"--resume: {out} holds no unfinished run to continue")
    _probe(out)
    if resume:
        return marker, True
    if ours:  # --overwrite (checked above): the old manifest first, then the rest, marker last
        first = [r for r in ours if r == MANIFEST_NAME]
        last = [r for r in ours if r == MARKER_NAME]
        rest = [r for r in ours if r not in (MANIFEST_NAME, MARKER_NAME)]
        for group in (first, rest, last):
            _delete(out, group)
    new = RunMarker.new(fingerprint, extra, run_id)
    fs.write_bytes(fs.join(out, MARKER_NAME), new.to_json())
    return new, False


def _probe(out: str) -> None:
    probe = fs.join(out, PROBE_NAME)
    _bounded(lambda: fs.write_bytes(probe, b"gradum"), out, "write to")
    fs.delete([probe])


def _delete(out: str, rels: list[str]) -> None:
    """Delete these objects of ours, in parallel; then, locally, the directories they leave
    empty (never a directory that still holds anything)."""
    if not rels:
        return
    paths = [fs.join(out, *r.split("/")) for r in rels]
    chunks = [paths[i : i + 500] for i in range(0, len(paths), 500)]
    with ThreadPoolExecutor(min(DELETE_THREADS, len(chunks))) as pool:
        list(pool.map(fs.delete, chunks))
    if not fs.is_remote(out):
        top = os.path.abspath(out)
        for d in sorted({os.path.dirname(os.path.abspath(p)) for p in paths}, key=len)[::-1]:
            while d != top and d.startswith(top + os.sep) and not os.listdir(d):
                os.rmdir(d)
                d = os.path.dirname(d)


def _relative_listing(out: str) -> list[str]:
    """Every object under ``out``, relative to it (``/``-separated)."""
    if not fs.is_remote(out):
        if os.path.exists(out) and not os.path.isdir(out):
            raise OutputError(f"{out} is a file, not a directory")
        base = out
        return [os.path.relpath(p, base).replace(os.sep, "/") for p, _ in fs.list_prefix(base)]
    prefix = out.rstrip("/") + "/"
    return [p[len(prefix) :] for p, _ in fs.list_prefix(out)]


def _read_json(out: str, name: str) -> dict:
    try:
        data = json.loads(fs.read_bytes(fs.join(out, name)))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{out}/{name} is unreadable ({exc}); remove it by hand") from None
    if not isinstance(data, dict):
        raise OutputError(f"{out}/{name} is not a JSON object; remove it by hand")
    return data


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
