"""The scoring job: ``gradum score`` and ``python -m pipelines.score``.

inputs -> records (bad ones dead-lettered with their reason) -> scorers through RunInference
-> staging pieces partitioned by shard (``OUT/staging/``) -> optional spherical k-means over
embeddings -> per shard: repeated ids dead-lettered; value and rank sketches of what is written ->
difficulty and bucket -> Arrow shards -> ``manifest.json``, written last.

Every path (inputs, ``--output``, the reference LM) may be local, ``gs://`` or ``s3://``;
``pipelines.io.storage`` is the only module that knows the difference. The launcher touches metadata
only (``pipelines.plan.inputs``): no pass over the data before the workers start. The stages are the
composite transforms of ``pipelines.job.graph``.
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
from dataclasses import asdict
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


def _beam_options(beam_args: list[str]):
    """Beam's options with gradum's local defaults: the DirectRunner, multi-process, one worker
    per core (up to 8); LOOPBACK for the embedded portable job server (no Docker needed).
    Options the user gave are kept as given."""
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        PortableOptions,
        StandardOptions,
    )

    options = PipelineOptions(list(beam_args))
    given = {a[2:].split("=", 1)[0] for a in beam_args if a.startswith("--")}
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or "DirectRunner"
    if "Direct" in standard.runner:
        direct = options.view_as(DirectOptions)
        if "direct_num_workers" not in given:
            direct.direct_num_workers = min(os.cpu_count() or 1, 8)
        if "direct_running_mode" not in given:
            direct.direct_running_mode = "multi_processing"
    if "Portable" in standard.runner and "environment_type" not in given:
        options.view_as(PortableOptions).environment_type = "LOOPBACK"
    return options


def _direct_runner(options):
    """The DirectRunner's FnApiRunner, built as the DirectRunner builds it, minus its first try:
    since Beam 2.6x the DirectRunner first tries the PrismRunner, which downloads a Go binary
    from GitHub at run time (DESIGN §6: nothing downloads) and, offline, fails and falls back
    after a network attempt. gradum's jobs are batch jobs the FnApiRunner runs, with
    ``direct_num_workers`` / ``direct_running_mode`` as given. None: let Beam choose."""
    from apache_beam.options.pipeline_options import StandardOptions

    if options.view_as(StandardOptions).runner != "DirectRunner":
        return None
    try:
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle
    except ImportError:  # another Beam layout: the DirectRunner decides
        return None
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(info))


def _threads_per_worker(options) -> int | None:
    """Torch threads per local worker process: the cores divided among the workers."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    direct = options.view_as(DirectOptions)
    runner = options.view_as(StandardOptions).runner or ""
    if "Direct" not in runner or direct.direct_running_mode == "in_memory":
        return None
    workers = direct.direct_num_workers or (os.cpu_count() or 1)
    return max(1, (os.cpu_count() or 1) // workers)


def _train_reference(cfg: JobConfig, console=None) -> str:
    """Train the reference LM on the first records of the input (launcher side), store it
    under ``OUT/reference_lm`` and return that path; workers load it from there."""
    from pipelines.io.formats import read_sample
    from pipelines.output.preflight import stage_reference_lm
    from scorers.reference_lm import train_reference_lm

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
        return stage_reference_lm(local, cfg.output)


def _local_workers(options) -> bool:
    """Whether the job's workers run on this machine (and can feed the progress bar)."""
    from apache_beam.options.pipeline_options import PortableOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner or ""
    if "Direct" in runner or "FnApiRunner" in runner:
        return True
    env = options.view_as(PortableOptions).environment_type or ""
    return runner in ("PortableRunner", "PrismRunner") and env.upper() == "LOOPBACK"


def _job_url(result, options) -> str | None:
    """The Dataflow console page of a submitted job, when the runner is Dataflow."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions

    if "Dataflow" not in (options.view_as(StandardOptions).runner or ""):
        return None
    job_id = getattr(result, "job_id", None)
    job_id = job_id() if callable(job_id) else job_id
    if not job_id:
        return None
    gcp = options.view_as(GoogleCloudOptions)
    return (
        f"https://console.cloud.google.com/dataflow/jobs/{gcp.region}/{job_id}"
        f"?project={gcp.project}"
    )


def run_job(cfg: JobConfig, beam_args: list[str] | None = None, console=None) -> dict[str, Any]:
    """Run the job; return the manifest. Raises :class:`JobError` for user errors.

    ``console`` (a :class:`pipelines.console.log.JobConsole`, entered) gets the progress bar and
    the summary; without one the summary goes to stderr and there is no bar."""
    import apache_beam as beam

    from pipelines.job import graph as transforms
    from pipelines.job import steps
    from pipelines.model import clustering
    from pipelines.model.inference import ScorerModelHandler
    from pipelines.output.preflight import OutputError, prepare_output, recorded_options
    from pipelines.plan.inputs import is_fine_grained, plan_inputs

    check(cfg)
    options = _beam_options(beam_args or [])
    fs.set_options(options)
    try:
        plan = plan_inputs(cfg.inputs)  # fail early, before touching --output
        prepare_output(cfg.output, cfg.overwrite)
    except (FileNotFoundError, ValueError, OutputError) as exc:
        raise JobError(str(exc)) from None
    resolve_proxy(cfg)
    if cfg.lm == "reference":
        cfg.lm = _train_reference(cfg, console)
    specs = scorer_specs(cfg)
    sig = signal_set(cfg, specs)
    sampled, proxy_features = proxy_setup(cfg, sig)
    weights = difficulty_weights(cfg, sig.directions)
    n_shards = cfg.num_shards or plan.num_shards(cfg.rows_per_shard, cfg.shard_bytes)
    layout = transforms.Layout(
        out_dir=cfg.output,
        columns=sig.columns,
        directions=sig.directions,
        weights=weights,
        n_shards=n_shards,
        n_buckets=cfg.buckets,
        embedding_dim=sig.embedding_dim,
        sketch_error=cfg.sketch_error,
        proxy_target=cfg.proxy,
        proxy_features=tuple(proxy_features),
    )
    sample_size = max(256 * cfg.clusters, 20_000)
    show_bar = console is not None and cfg.progress and _local_workers(options)
    progress_dir = tempfile.mkdtemp(prefix="gradum-progress-") if show_bar else None
    started = time.monotonic()

    pipeline = beam.Pipeline(runner=_direct_runner(options), options=options)
    job_token = f"{os.getpid()}-{time.time_ns()}"
    read = (
        pipeline
        | "Units" >> beam.Create(plan.units)
        | "ReadScoreStage"
        >> (
            transforms.ReadScoreStage(
                layout,
                read_fn=steps.ReadFn(
                    cfg.text_field, cfg.id_field, cfg.max_text_bytes, cfg.batch_size, progress_dir
                ),
                handler=ScorerModelHandler(
                    specs,
                    progress_dir=progress_dir,
                    torch_threads=_threads_per_worker(options),
                    job_token=job_token,
                    sampled=sampled,
                ),
                spread_batches=not all(is_fine_grained(u) for u in plan.units),
                sample_threshold=clustering.sample_threshold(sample_size, plan.rows)
                if cfg.clusters > 0
                else None,
                seed=cfg.seed,
            )
        )
    )
    model = None
    if cfg.clusters > 0:
        model = read["sample"] | "FitClusters" >> transforms.FitClusters(
            cfg.clusters, cfg.seed, sample_size
        )
    proxy_model = None
    if cfg.proxy:
        proxy_model = read["proxy_sample"] | "FitProxy" >> transforms.FitProxy(
            cfg.proxy,
            proxy_features,
            cfg.seed,
            tokens=cfg.lm if sig.producers[cfg.proxy] == "lm" else None,
            job_token=job_token,
        )
    built = read["staged"] | "BuildShards" >> transforms.BuildShards(
        layout, read["meta_types"], model, proxy_model, progress_dir
    )
    dead_infos = [
        read[f"dead_{stage}"]
        | f"DeadLetters{stage.title()}" >> transforms.WriteDeadLetters(cfg.output, stage)
        for stage in ("read", "score")
    ] + [
        built["dead_write"] | "DeadLettersWrite" >> transforms.WriteDeadLetters(cfg.output, "write")
    ]
    _ = pipeline | "Commit" >> transforms.Commit(
        shards=built["shards"],
        dead_infos=dead_infos,
        count=read["count"],
        sketches=built["sketches"],
        ranks=built["ranks"],
        model=model,
        proxy_model=proxy_model,
        out_dir=cfg.output,
        signals=sig.records,
        options=dict(
            asdict(cfg),
            beam_options=recorded_options(options.get_all_options(drop_default=True)),
            difficulty_weights=weights,
            num_shards=n_shards,
        ),
        plan=plan.describe(),
        max_dead_fraction=cfg.max_dead_letter_fraction,
    )
    if console is not None:  # the checks passed: the job starts (an error above is one line)
        console.say(f"{console.command}: log -> {console.log_path} (-v shows it here)")
    try:
        _run(pipeline, options, console, progress_dir, progress.plan_total(plan), plan.exact)
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
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
    result = pipeline.run()
    url = _job_url(result, options)
    if console is not None:
        if url:
            console.say(f"gradum: Dataflow job {url} (no progress bar for remote workers)")
        elif not _local_workers(options):
            console.say("gradum: remote workers: their progress shows in the runner's UI")
    result.wait_until_finish()


def _explain(exc: BaseException) -> str | None:
    """The user-facing message inside a Beam failure, if it is one of ours."""
    from pipelines.job.commit import DeadLetterFractionError

    if isinstance(exc, DeadLetterFractionError | JobError):
        return str(exc).split(" [while running")[0]
    text = str(exc)
    for marker in ("DeadLetterFractionError:", "JobError:"):
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
    except JobError as exc:
        status, line = 2, f"{command}: error: {exc}"
    except Exception as exc:  # noqa: BLE001 - Beam wraps worker errors: one line, log has the rest
        message = _explain(exc)
        status, line = 1, f"{command}: failed: {message or one_line_error(exc)}"
    print(f"{console.redact(line)} (log: {console.log_path})", file=sys.stderr)
    return status, None


def run_from_args(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    status, _ = run_console_job(
        JobConfig.from_args(args),
        beam_args,
        verbose=getattr(args, "verbose", False),
        log_file=getattr(args, "log_file", None),
    )
    return status
