"""The launcher of the scoring job: ``gradum score`` and ``python -m pipelines.score``.

Before any worker starts it checks the options, plans the inputs from metadata only
(:mod:`pipelines.plan.inputs`), refuses an input inside the output, checks the output and
writes the run marker (:mod:`pipelines.output`), trains the reference LM when asked, writes
the plan objects of a many-file input, then builds the graph (:mod:`pipelines.job.graph`)
and runs it with one progress bar. Every path may be local, ``gs://`` or ``s3://``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.config import DEFAULT_SIGNALS, JobConfig, JobError, check
from pipelines.console import progress
from pipelines.io import storage as fs
from pipelines.model.signals import (
    difficulty_weights,
    proxy_setup,
    resolve_proxy,
    scorer_specs,
    signal_set,
)

__all__ = [
    "DEFAULT_SIGNALS",
    "JobConfig",
    "JobError",
    "run_job",
    "run_console_job",
    "run_from_args",
]


def _train_reference(cfg: JobConfig, staging: str, resumed: bool, console=None) -> str:
    """Train the reference LM on the first records of the input (launcher side), store it
    under ``OUT/reference_lm`` and return that path; workers load it from there. A resumed
    run reuses the model its first launcher stored (the parts it scored used that model)."""
    from pipelines.output.preflight import stage_reference_lm
    from pipelines.plan.sample import read_sample
    from scorers.reference_lm import train_reference_lm

    done = fs.join(staging, REFERENCE_DONE)
    if resumed and fs.exists(done):
        return fs.read_bytes(done).decode()
    texts = read_sample(cfg.inputs, cfg.reference_lm_samples, cfg.text_field)
    if len(texts) < 10:
        raise JobError("--lm reference needs at least 10 readable records to train on")
    with tempfile.TemporaryDirectory(prefix="gradum-reference-lm-") as tmp:
        local = tmp if fs.is_remote(cfg.output) else os.path.join(cfg.output, "reference_lm")
        say = console.say if console else lambda m: print(m, file=sys.stderr)
        say(f"gradum: training the reference LM on {len(texts):,} records")
        with console.to_console() if console else contextlib.nullcontext():
            train_reference_lm(
                texts, local, steps=cfg.reference_lm_steps, seed=cfg.seed, progress=cfg.progress
            )
        path = stage_reference_lm(local, cfg.output)
    fs.write_bytes(done, path.encode())
    return path


REFERENCE_DONE = "reference_lm.done"
_NOT_CONTENT = {"output", "overwrite", "resume", "progress", "extra_outputs", "config"}


def config_fingerprint(cfg: JobConfig) -> str:
    """A hash of every setting that changes what the job writes."""
    import hashlib

    settings = {k: v for k, v in asdict(cfg).items() if k not in _NOT_CONTENT}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
        :32
    ]


def _write_plan(plan, staging: str) -> list[tuple]:
    """The graph's sources: the non-file inputs, and the files inline (a few) or as plan
    objects of ``FILES_PER_SOURCE`` files each under the run's staging prefix."""
    batches = plan.file_batches()
    if len(batches) <= 1:
        return [("files", b) for b in batches] + list(plan.sources)
    sources = []
    for i, batch in enumerate(batches):
        path = fs.join(staging, "plan", f"files-{i:05d}.json")
        fs.write_bytes(path, json.dumps(batch).encode())
        sources.append(("plan", path))
    return sources + list(plan.sources)


@dataclass
class PreparedJob:
    """What the launcher decided before writing anything (see :func:`plan_job`)."""

    cfg: JobConfig
    options: Any
    plan: Any
    specs: list
    extra: tuple[str, ...]
    reference: bool  # --lm reference: trained once the output is claimed
    console: Any = None
    progress_dir: str | None = None


def plan_job(cfg: JobConfig, beam_args: list[str] | None = None, console=None) -> PreparedJob:
    """Check the options, plan the inputs (metadata only) and refuse an input inside the
    output: nothing is written. Raises :class:`JobError` for user errors."""
    from pipelines.job import runner
    from pipelines.output.preflight import OutputError, check_inputs_outside
    from pipelines.plan.inputs import plan_inputs

    check(cfg)
    options = runner.beam_options(beam_args or [])
    runner.refuse_unsupported(options)
    fs.set_options(options)
    try:
        plan = plan_inputs(cfg.inputs)
        check_inputs_outside(cfg.inputs, [p for _, p, _ in plan.files], cfg.output)
    except (FileNotFoundError, ValueError, OutputError) as exc:
        raise JobError(str(exc)) from None
    resolve_proxy(cfg)
    specs = scorer_specs(cfg)
    reference = cfg.lm == "reference"
    extra = tuple(cfg.extra_outputs) + (("reference_lm/",) if reference else ())
    return PreparedJob(cfg, options, plan, specs, extra, reference, console)


def claim_output(job: PreparedJob) -> tuple[Any, bool]:
    """Check the output and write the run marker (deleting, with ``--overwrite``, only what
    the old run wrote); train the reference LM when asked. Returns ``(marker, resumed)``."""
    from pipelines.output.preflight import OutputError, prepare_output

    cfg = job.cfg
    try:
        marker, resumed = prepare_output(
            cfg.output,
            overwrite=cfg.overwrite,
            resume=cfg.resume,
            fingerprint={"options": config_fingerprint(cfg), "inputs": job.plan.fingerprint()},
            extra=job.extra,
        )
    except OutputError as exc:
        raise JobError(str(exc)) from None
    if job.console is not None:
        job.console.claim_log()
    if job.reference:
        staging = fs.join(cfg.output, "staging", marker.run_id)
        cfg.lm = _train_reference(cfg, staging, resumed, job.console)
        job.specs = scorer_specs(cfg)
    return marker, resumed


def build_pipeline(job: PreparedJob, marker: Any, resumed: bool):
    """The Beam pipeline of a claimed job (:mod:`pipelines.job.graph`); writes the plan
    objects of a many-file input."""
    import apache_beam as beam

    from pipelines.job import graph, runner
    from pipelines.job.dedupe import plan_buckets
    from pipelines.job.read import ReadPart
    from pipelines.output.preflight import recorded_options
    from pipelines.plan.units import Sizing

    cfg, plan, specs, options = job.cfg, job.plan, job.specs, job.options
    sig = signal_set(cfg, specs)
    sampled, proxy_features = proxy_setup(cfg, sig)
    weights = difficulty_weights(cfg, sig.directions)
    sizing = Sizing.plan(
        rows=plan.rows,
        nbytes=plan.bytes,
        rows_per_shard=cfg.rows_per_shard,
        shard_bytes=cfg.shard_bytes,
        num_shards=cfg.num_shards,
        bytes_per_record=plan.bytes_per_record,
    )
    staging = fs.join(cfg.output, "staging", marker.run_id)
    job_token = marker.run_id
    later = {"centroid_distance", f"{cfg.proxy}_proxy"}
    layout = graph.Layout(
        out_dir=cfg.output,
        staging=staging,
        columns=sig.columns,
        directions=sig.directions,
        weights=weights,
        n_buckets=cfg.buckets,
        sizing=sizing,
        keep_embeddings=bool(sig.embedding_dim),
        sketch_error=cfg.sketch_error,
        clusters=cfg.clusters,
        kmeans_sample=max(256 * cfg.clusters, 20_000),
        seed=cfg.seed,
        proxy_target=cfg.proxy,
        proxy_features=tuple(proxy_features),
        proxy_tokens=cfg.lm if cfg.proxy and sig.producers[cfg.proxy] == "lm" else None,
        dedupe_buckets=plan_buckets(plan.rows, plan.streamed) if cfg.id_field != "none" else 0,
        estimated_rows=plan.rows,
        rows_guessed=plan.streamed,
        job_token=job_token,
        progress_dir=job.progress_dir,
        scored_columns=[c for c in sig.columns if c not in later],
    )
    read = ReadPart(
        text_field=cfg.text_field,
        id_field=cfg.id_field,
        max_text_bytes=cfg.max_text_bytes,
        batch_size=cfg.batch_size,
        sort_by_length=any(n in ("lm", "embedding") for n, _ in specs),
        staging=staging,
        resume=resumed,
        budget=(job_token, cfg.max_dead_letter_fraction, plan.rows, plan.exact),
        progress_dir=job.progress_dir,
    )
    steps = graph.scoring_steps(specs, sampled, runner.threads_per_worker(options), job_token)
    sources = _write_plan(plan, staging)
    pipeline = beam.Pipeline(runner=runner.direct_runner(options), options=options)
    # Beam removes the pipeline's scratch folder only when it runs: one built and not run (a
    # dry run, a graph measured, a failure before the run) would leave it in the temp dir.
    weakref.finalize(pipeline, shutil.rmtree, pipeline.local_tempdir, ignore_errors=True)
    graph.build(
        pipeline,
        layout,
        sources,
        read=read,
        steps=steps,
        commit_args=dict(
            max_dead_fraction=cfg.max_dead_letter_fraction,
            signals=sig.records,
            options=dict(
                asdict(cfg),
                beam_options=recorded_options(options.get_all_options()),
                difficulty_weights=weights,
                run_id=marker.run_id,
            ),
            plan=dict(plan.describe(), part_rows=sizing.part_rows, part_bytes=sizing.part_bytes),
            outputs={
                "files": list(cfg.extra_outputs),
                "prefixes": ["reference_lm/"] if "reference_lm/" in job.extra else [],
            },
        ),
    )
    return pipeline


def run_job(cfg: JobConfig, beam_args: list[str] | None = None, console=None) -> dict[str, Any]:
    """Run the job; return the manifest. Raises :class:`JobError` for user errors.

    ``console`` (a :class:`pipelines.console.log.JobConsole`, entered) gets the progress bar and
    the summary; without one the summary goes to stderr and there is no bar."""
    from pipelines.job import runner

    job = plan_job(cfg, beam_args, console)
    marker, resumed = claim_output(job)
    show_bar = console is not None and cfg.progress and runner.local_workers(job.options)
    job.progress_dir = tempfile.mkdtemp(prefix="gradum-progress-") if show_bar else None
    try:
        pipeline = build_pipeline(job, marker, resumed)
        if console is not None:  # the job starts (an error before this is one line)
            console.say(f"{console.command}: log -> {console.log_path} (-v shows it here)")
            if resumed:
                staging = fs.join(cfg.output, "staging", marker.run_id)
                done = len(fs.list_prefix(fs.join(staging, "done")))
                console.say(
                    f"{console.command}: resuming run {marker.run_id}: {done:,} finished parts "
                    "are reused"
                )
        started = time.monotonic()
        _run(
            pipeline,
            job.options,
            console,
            job.progress_dir,
            progress.plan_total(job.plan),
            job.plan.exact,
        )
    finally:
        if job.progress_dir:
            shutil.rmtree(job.progress_dir, ignore_errors=True)
    elapsed = time.monotonic() - started

    manifest = json.loads(fs.read_bytes(fs.join(cfg.output, "manifest.json")))
    counts = manifest["counts"]
    summary = (
        f"gradum: {counts['input']:,} records read, {counts['written']:,} written, "
        f"{counts['dead_letter']:,} dead-lettered in {elapsed:.1f}s "
        f"({counts['input'] / max(elapsed, 1e-9):,.0f} docs/s) -> {cfg.output}"
    )
    if console is not None:
        console.say(summary)
    else:
        print(summary, file=sys.stderr)
    return manifest


def _run(
    pipeline, options, console, progress_dir: str | None, total: int | None, exact: bool = True
) -> None:
    """Run the pipeline to its end: one progress bar over local workers; on Dataflow, the
    job's page instead (its workers are remote: their counters show there)."""
    if progress_dir is not None:
        with progress.ProgressDisplay(progress_dir, total, console.stream, exact):
            pipeline.run().wait_until_finish()
        return
    from pipelines.job.runner import job_url, local_workers

    result = pipeline.run()
    url = job_url(result, options)
    if console is not None:
        if url:
            console.say(f"gradum: Dataflow job {url} (no progress bar for remote workers)")
        elif not local_workers(options):
            console.say("gradum: remote workers: their progress shows in the runner's UI")
    result.wait_until_finish()


def _explain(exc: BaseException) -> str | None:
    """The user-facing message inside a Beam failure, if it is one of ours."""
    from pipelines.job.failfast import DeadLetterFractionError, ScorerBrokenError

    if isinstance(exc, DeadLetterFractionError | ScorerBrokenError | JobError):
        return str(exc).split(" [while running")[0]
    text = str(exc)
    for marker in ("DeadLetterFractionError:", "ScorerBrokenError:", "JobError:"):
        if marker in text:
            return text.split(marker, 1)[1].strip().splitlines()[0]
    return None


def run_console_job(
    cfg: JobConfig,
    beam_args: list[str] | None = None,
    *,
    command: str = "gradum score",
    verbose: bool = False,
    log_file: str | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """Run the job with one progress bar and the libraries' output in a log file
    (:mod:`pipelines.console.log`); return ``(exit status, manifest or None)``. A failure is one
    line on stderr naming the log, which holds the traceback."""
    from pipelines.console.log import JobConsole, one_line_error

    beam_args = list(beam_args or [])
    console = JobConsole.for_job(
        cfg.output, log_file=log_file, verbose=verbose, beam_args=beam_args, command=command
    )
    try:
        with console:
            return 0, run_job(cfg, beam_args, console)
    except JobError as exc:  # refused: nothing was written; a pending log is not kept
        line = console.redact(f"{command}: error: {exc}")
        if console.discard_log():
            print(line, file=sys.stderr)
        else:
            print(f"{line} (log: {console.log_path})", file=sys.stderr)
        return 2, None
    except Exception as exc:  # noqa: BLE001 - Beam wraps worker errors: one line, log has the rest
        message = _explain(exc)
        status, line = 1, f"{command}: failed: {message or one_line_error(exc)}"
    print(f"{console.redact(line)} (log: {console.log_path})", file=sys.stderr)
    return status, None


def run_from_args(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    """Run a parsed ``gradum score`` command line; bucket options parsed into ``args``
    (``--s3_endpoint_url`` ...) reach Beam unless ``beam_args`` already names them."""
    status, _ = run_console_job(
        JobConfig.from_args(args),
        _with_storage_args(args, list(beam_args or [])),
        verbose=getattr(args, "verbose", False),
        log_file=getattr(args, "log_file", None),
    )
    return status


def _with_storage_args(args: argparse.Namespace, beam_args: list[str]) -> list[str]:
    from shards.storage_options import StorageOptions

    named = {a.split("=", 1)[0].lstrip("-").replace("-", "_") for a in beam_args}
    extra = [
        a
        for a in StorageOptions.from_args(args).beam_args()
        if a.split("=", 1)[0].lstrip("-") not in named
    ]
    return [*extra, *beam_args]
