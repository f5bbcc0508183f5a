"""Which Beam runner a job uses, with gradum's local defaults, and what that implies: the
DirectRunner's FnApiRunner without its Prism detour, torch threads per local worker, whether
the workers are local (a progress bar) or remote (the runner's own UI), and the runner gradum
refuses (Beam's DaskRunner: it loses data without an error)."""

from __future__ import annotations

from pipelines.job.command_line import available_cores

# One line: why Beam's DaskRunner (2.77) is refused. tests/test_runner_dask.py shows each loss on a
# real dask.distributed cluster, so this refusal is revisited when a Beam release fixes them.
DASK_REFUSED = (
    "Beam's DaskRunner is not supported: it loses data without an error (it runs only the "
    "last sink of a pipeline, drops what a DoFn emits in finish_bundle, where BatchElements "
    "and RunInference emit, and fails on ReadFromText); use the DirectRunner, the "
    "PortableRunner, Flink, Spark or Dataflow"
)


def is_dask(runner: object) -> bool:
    """Whether ``runner`` (a ``--runner`` value or a runner object) is Beam's DaskRunner."""
    name = runner if isinstance(runner, str) else type(runner).__name__
    return "dask" in (name or "").rsplit(".", 1)[-1].lower()


def refuse_unsupported(options) -> None:
    """Raise :class:`~pipelines.config.JobError` (one line naming the runner and why) for a
    runner gradum refuses; called before anything is read or written."""
    from apache_beam.options.pipeline_options import StandardOptions

    from pipelines.config import JobError

    if is_dask(options.view_as(StandardOptions).runner or ""):
        raise JobError(DASK_REFUSED)


def beam_options(beam_args: list[str]):
    """Beam's options with gradum's local defaults: the DirectRunner, multi-process, one worker
    per core (up to 8); LOOPBACK for the embedded portable job server (no Docker needed).
    Options the user gave are kept as given."""
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PortableOptions,
        StandardOptions,
    )

    from pipelines.job.options_views import CachedViews

    options = CachedViews(list(beam_args))
    given = {a[2:].split("=", 1)[0] for a in beam_args if a.startswith("--")}
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or "DirectRunner"
    if "Direct" in standard.runner:
        direct = options.view_as(DirectOptions)
        if "direct_num_workers" not in given:
            direct.direct_num_workers = min(available_cores(), 8)
        if "direct_running_mode" not in given:
            direct.direct_running_mode = "multi_processing"
    if "Portable" in standard.runner and "environment_type" not in given:
        options.view_as(PortableOptions).environment_type = "LOOPBACK"
    return options


def direct_runner(options):
    """The DirectRunner's FnApiRunner (with bounded bundles: :mod:`pipelines.job.local_bundles`),
    built as the DirectRunner builds it, minus its first try:
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
    from pipelines.job import warm_workers
    from pipelines.job.local_bundles import runner_class

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    cls = runner_class()
    if warm_workers.active():
        cls = warm_workers.with_warm_workers(cls)
    return cls(provision_info=fn_runner.ExtendedProvisionInfo(info))


def threads_per_worker(options) -> int | None:
    """Torch threads per local worker process: the cores divided among the workers."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    direct = options.view_as(DirectOptions)
    runner = options.view_as(StandardOptions).runner or ""
    if "Direct" not in runner or direct.direct_running_mode == "in_memory":
        return None
    workers = direct.direct_num_workers or available_cores()
    return max(1, available_cores() // workers)


def workers_in_subprocesses(options) -> bool:
    """Whether the DirectRunner runs the job's workers as separate processes (this process then
    plans and holds the local runner's shuffles, and scores nothing)."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner or ""
    mode = options.view_as(DirectOptions).direct_running_mode
    return "Direct" in runner and mode == "multi_processing"


def local_workers(options) -> bool:
    """Whether the job's workers run on this machine (and can feed the progress bar)."""
    from apache_beam.options.pipeline_options import PortableOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner or ""
    if "Direct" in runner or "FnApiRunner" in runner:
        return True
    env = options.view_as(PortableOptions).environment_type or ""
    portable = ("PortableRunner", "PrismRunner", "FlinkRunner", "SparkRunner")
    return runner in portable and env.upper() == "LOOPBACK"  # workers in this process


def job_url(result, options) -> str | None:
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
