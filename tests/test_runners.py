"""The runner matrix (issue 23): the same tiny job on each runner gradum supports gives the
rows of the default local run (the DirectRunner, multi-process), shard for shard.

- the FnApiRunner named as the runner, in memory and multi-process;
- the PortableRunner with the embedded job server, LOOPBACK (workers in this process) and
  EXTERNAL (worker processes started by a ``worker_pool_main`` this module starts);
- Flink, Spark and Prism where a job-server jar or the Prism binary is given
  (``GRADUM_FLINK_JOB_SERVER_JAR`` / ``--gradum-flink-job-server-jar``, ``GRADUM_SPARK_...``,
  ``GRADUM_PRISM_BINARY`` / ``--gradum-prism-binary``): nothing is downloaded, so they are
  skipped, with the reason, otherwise.

Beam's DaskRunner is refused: ``tests/test_runner_dask.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.cli import run_score_command
from shards import ShardSet

ROOT = Path(__file__).resolve().parents[1]
INPUT = "builtin:graded?n=40"
JOB = ["--signals", "length,compression_ratio", "--no-progress"]


def _score(out: Path, *runner_args: str) -> dict:
    """Run the job through the command line's own path; return what the rows test compares."""
    assert run_score_command([INPUT, "--output", str(out), *JOB, *runner_args]) == 0
    ds = ShardSet.open(out)
    return {
        "rows": sorted(ds.table().to_pylist(), key=lambda r: r["id"]),
        "shards": [(s["path"], s["rows"], s["sha256"]) for s in ds.manifest["shards"]],
        "counts": ds.manifest["counts"],
    }


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> dict:
    """The default local run (no runner option: the DirectRunner, one worker process per core)."""
    run = _score(tmp_path_factory.mktemp("runners") / "local")
    assert run["counts"] == {"input": 40, "written": 40, "dead_letter": 0}
    assert {"chars", "words", "compression_ratio", "difficulty"} <= set(run["rows"][0])
    return run


@pytest.mark.parametrize(
    "runner_args",
    [
        ["--runner=FnApiRunner"],  # Beam's own defaults: in memory, one worker
        [
            "--runner=FnApiRunner",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ],
        ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
    ],
    ids=["fnapi-in-memory", "fnapi-multi-processing", "portable-loopback"],
)
def test_local_runners_give_the_local_runs_rows(local_run, tmp_path, runner_args):
    assert _score(tmp_path / "out", *runner_args) == local_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory):
    """A Beam worker pool in its own process group: it starts each SDK worker as ``python``
    (this interpreter's bin directory first on PATH, this checkout first on PYTHONPATH)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("worker-pool") / "pool.log"
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    with open(log, "wb") as fh:
        pool = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
             f"--service_port={port}"],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert pool.poll() is None, f"the worker pool exited: {log.read_text()[-2000:]}"
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the worker pool did not start in 60 s"
                time.sleep(0.2)
        yield f"localhost:{port}", log
    finally:
        os.killpg(pool.pid, signal.SIGTERM)  # the pool and the workers it started
        try:
            pool.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(pool.pid, signal.SIGKILL)
            pool.wait()


def test_portable_runner_with_an_external_worker_pool_gives_the_local_runs_rows(
    local_run, tmp_path, worker_pool
):
    address, log = worker_pool
    run = _score(
        tmp_path / "out",
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config={address}",
    )
    assert run == local_run
    assert "Starting worker with command" in log.read_text()  # the pool ran the work


# -- cluster runners: run where their job server is given, skipped otherwise -----------------
CLUSTER_RUNNERS = {
    "flink": (
        "GRADUM_FLINK_JOB_SERVER_JAR",
        "Beam's Flink job-server jar (beam-runners-flink-1.x-job-server-2.x.jar) and java",
        lambda path: [
            "--runner=FlinkRunner",
            f"--flink_job_server_jar={path}",
            "--flink_master=[local]",
            "--environment_type=LOOPBACK",
        ],
    ),
    "spark": (
        "GRADUM_SPARK_JOB_SERVER_JAR",
        "Beam's Spark job-server jar (beam-runners-spark-3-job-server-2.x.jar) and java",
        lambda path: [
            "--runner=SparkRunner",
            f"--spark_job_server_jar={path}",
            "--spark_master_url=local[2]",
            "--environment_type=LOOPBACK",
        ],
    ),
    "prism": (
        "GRADUM_PRISM_BINARY",
        "the Prism binary of Beam's release (apache_beam-2.x-prism-linux-amd64)",
        lambda path: [
            "--runner=PrismRunner",
            f"--prism_location={path}",
            "--environment_type=LOOPBACK",
        ],
    ),
}


def cluster_option(name: str) -> str:
    """The pytest option naming a runner's job server (see conftest.py)."""
    return "--" + CLUSTER_RUNNERS[name][0].lower().replace("_", "-")


@pytest.mark.parametrize("name", sorted(CLUSTER_RUNNERS))
def test_cluster_runner_gives_the_local_runs_rows(request, local_run, tmp_path, name):
    variable, what, args = CLUSTER_RUNNERS[name]
    path = request.config.getoption(cluster_option(name)) or os.environ.get(variable)
    if not path:
        pytest.skip(f"{name}: needs {what}; give it with {variable}=PATH or {cluster_option(name)}")
    if not os.path.exists(path):
        pytest.fail(f"{name}: {path} (from {variable} / {cluster_option(name)}) does not exist")
    if name != "prism" and shutil.which("java") is None:
        pytest.skip(f"{name}: the job server needs java on PATH")
    assert _score(tmp_path / "out", *args(path)) == local_run
