"""Local workers started early (pipelines.job.warm_workers): the command line's guess of its
worker count agrees with the options it then parses; a claimed worker runs Beam's worker and
reports its exit code; a worker ends when its client is killed or when the launcher ends
unclaimed; a client that finds no worker becomes Beam's worker itself; a job whose runner
claims fewer or more workers than were started gives the same shards."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.job import warm_workers
from pipelines.job.command_line import available_cores
from pipelines.job.runner import beam_options, workers_in_subprocesses
from shards import ShardSet

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "pipelines" / "job" / "warm_client.py"


def _ended(pid: int, timeout: float = 20.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def _waiting(pool: warm_workers.WarmPool, timeout: float = 30.0) -> None:
    """Until every worker of ``pool`` has bound its socket."""
    deadline = time.monotonic() + timeout
    while len(list(Path(pool.dir).glob("free-*.sock"))) < pool.n:
        assert time.monotonic() < deadline, "warm workers did not start"
        time.sleep(0.05)


WORDS = st.lists(
    st.sampled_from(
        [
            "--runner=DirectRunner",
            "--runner=FnApiRunner",
            "--runner=DataflowRunner",
            "--direct_running_mode=in_memory",
            "--direct_running_mode=multi_processing",
            "--direct_running_mode=multi_threading",
            "--direct_num_workers=1",
            "--direct_num_workers=3",
            "--direct_num_workers",
            "4",
            "--runner",
            "DirectRunner",
        ]
    ),
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(WORDS)
def test_the_guessed_worker_count_is_the_one_the_options_give(words):
    try:
        options = beam_options(words)
        from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

        runner = options.view_as(StandardOptions).runner
        n = options.view_as(DirectOptions).direct_num_workers
    except (SystemExit, ValueError):  # Beam refuses the words: nothing to agree with
        return
    expected = n if runner == "DirectRunner" and workers_in_subprocesses(options) else 0
    assert warm_workers.planned_workers(words) == expected


def test_no_guess_for_a_dry_run_help_or_a_config_file():
    assert warm_workers.planned_workers([]) == min(available_cores(), 8)
    for extra in (["--dry-run"], ["-h"], ["--config", "job.yaml"], ["--config=job.yaml"]):
        assert warm_workers.planned_workers(extra) == 0


def test_a_claimed_worker_runs_beams_worker_and_reports_its_exit_code(capfd):
    pool = warm_workers.WarmPool(1)
    try:
        _waiting(pool)
        env = {k: v for k, v in os.environ.items() if "SERVICE_DESCRIPTOR" not in k}
        done = subprocess.run(
            [sys.executable, "-S", str(CLIENT), pool.dir], env=env, capture_output=True, timeout=60
        )
        # no control address in the client's environment: Beam's worker main, run by the
        # worker with that environment, fails as it would alone, on the launcher's stderr
        assert done.returncode == 1
        assert _ended(pool.procs[0].pid)
        assert "KeyError: 'CONTROL_API_SERVICE_DESCRIPTOR'" in capfd.readouterr().err
    finally:
        pool.close()


def test_a_killed_client_ends_its_worker(tmp_path):
    pool = warm_workers.WarmPool(1)
    try:
        _waiting(pool)
        env = dict(os.environ, CONTROL_API_SERVICE_DESCRIPTOR='url: "localhost:9"')
        client = subprocess.Popen(
            [sys.executable, "-S", str(CLIENT), pool.dir], env=env, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while list(Path(pool.dir).glob("free-*.sock")):  # not claimed yet
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert not _ended(pool.procs[0].pid, timeout=0.1)  # waiting on a runner that is not there
        client.send_signal(signal.SIGKILL)
        client.wait()
        assert _ended(pool.procs[0].pid)
    finally:
        pool.close()


def test_unclaimed_workers_end_with_the_launcher_and_leave_nothing_behind():
    code = (
        "import os, sys, time\n"
        "from pipelines.job import warm_workers\n"
        "pool = warm_workers.start_for(['--direct_num_workers=2'])\n"
        "print(json.dumps([pool.dir, [p.pid for p in pool.procs]]), flush=True)\n"
        "time.sleep(1.0)\n"
        "os._exit(0)\n"
    ).replace("import os", "import json, os")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    directory, pids = json.loads(out.stdout)
    assert len(pids) == 2
    assert all(_ended(pid) for pid in pids)
    assert not Path(directory).exists()  # the last one out removed the pool's directory


def test_a_client_with_no_worker_waiting_becomes_beams_worker(tmp_path):
    env = {k: v for k, v in os.environ.items() if "SERVICE_DESCRIPTOR" not in k}
    done = subprocess.run(
        [sys.executable, "-S", str(CLIENT), str(tmp_path)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0  # Beam's own worker, without a control address
    assert b"CONTROL_API_SERVICE_DESCRIPTOR" in done.stderr
    assert b"sdk_worker_main" in done.stderr


@pytest.mark.parametrize("started", [1, 3])
def test_a_job_gives_the_same_shards_whatever_number_of_workers_was_started(tmp_path, started):
    """Two worker processes claimed from a pool of 1 (the other is Beam's own) or of 3 (one
    is left over and ends with the pool): the shards are the in-memory run's."""
    from pipelines.cli import parse_score_args, run_score_command
    from pipelines.job.launch import run_from_args

    job = ["builtin:graded?n=300", "--signals", "length,readability", "--no-progress"]
    ref_args = ["--output", str(tmp_path / "ref"), "--direct_running_mode=in_memory"]
    assert run_score_command([*job, *ref_args, "--direct_num_workers=1"]) == 0
    args, beam_args = parse_score_args(
        [*job, "--output", str(tmp_path / "out"), "--direct_num_workers=2"]
    )
    pool = warm_workers._POOL = warm_workers.WarmPool(started)  # what start_for would set
    try:
        assert run_from_args(args, beam_args) == 0
    finally:
        warm_workers.stop()
    assert all(_ended(p.pid) for p in pool.procs)
    ref, out = ShardSet.open(tmp_path / "ref"), ShardSet.open(tmp_path / "out")
    assert [(s["path"], s["sha256"]) for s in out.manifest["shards"]] == [
        (s["path"], s["sha256"]) for s in ref.manifest["shards"]
    ]
    log = (tmp_path / "out" / "gradum.log").read_text()
    assert "local workers started early" in log
    scored_by = {int(pid) for pid in re.findall(r"gradum worker (\d+):", log)}
    assert scored_by
    if started >= 2:  # every worker the runner started was claimed from the pool
        assert scored_by <= {p.pid for p in pool.procs}


def test_a_runner_that_starts_no_subprocess_workers_ends_the_pool_at_once():
    from apache_beam.portability.api import beam_runner_api_pb2

    proto = beam_runner_api_pb2.Pipeline()
    proto.components.environments["e"].urn = "beam:env:embedded_python:v1"
    pool = warm_workers._POOL = warm_workers.WarmPool(1)
    try:
        assert warm_workers.rewrite_environments(proto) == 0
        assert not warm_workers.active()
        assert _ended(pool.procs[0].pid)
    finally:
        warm_workers.stop()


def test_no_workers_start_early_where_a_socket_path_would_be_too_long(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(deep))
    assert warm_workers.start_for(["--direct_num_workers=2"]) is None
    assert not warm_workers.active()
    monkeypatch.setenv("GRADUM_WARM_WORKERS", "0")
    monkeypatch.setattr("tempfile.tempdir", None)
    assert warm_workers.start_for(["--direct_num_workers=2"]) is None
