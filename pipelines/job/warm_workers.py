"""Local SDK workers started while the command line is still starting: the launcher side.

A multi-process local job used to start its workers only once the launcher had imported
Beam, planned and built the graph (about 3 s), and then waited for each worker to import
Beam in turn (about 2 s, ``apache_beam.runners.worker.sdk_worker_main``), so scoring began
about 5 s after the command. ``gradum score`` now starts its workers first, before it
imports anything heavy (:func:`start_for`): each one imports Beam's worker
(:mod:`pipelines.job.warm_worker_main`) while the launcher plans, then waits on a Unix socket.
Beam's local runner still starts its workers itself, as ``sh -c COMMAND`` with the addresses
of its services in the environment; the runner built for the job swaps that command for a
small stdlib-only client (:mod:`pipelines.job.warm_client`) that claims one waiting worker
(an atomic rename of its socket), hands it that environment, and lasts as long as it does,
with its exit code. Beam sees a worker process that starts in milliseconds.

Nothing else changes: the same Beam worker code runs with the same environment. A client that
finds no worker waiting (fewer started, one that died) starts Beam's worker itself, as Beam
would. A worker nobody claims ends with the launcher (its stdin is the launcher's pipe); one
whose client is killed ends at once. Only the command line uses this; a job run from Python
starts its workers as Beam does. ``GRADUM_WARM_WORKERS=0`` turns it off.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile

BEAM_WORKER = "apache_beam.runners.worker.sdk_worker_main"
_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes on Linux, the final NUL included
_SOCKET_NAMES = 40  # "/gradum-w-XXXXXXXX" + "/t<pid>.sock" or "/free-<k>.sock", with room
_POOL: WarmPool | None = None
_LOG = logging.getLogger("gradum.workers")


class WarmPool:
    """``n`` worker processes importing Beam's worker now, each waiting on a socket in a
    private directory until a client claims it."""

    def __init__(self, n: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="gradum-w-")
        self.n = n
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "pipelines.job.warm_worker_main", self.dir, str(k)],
                stdin=subprocess.PIPE,  # the launcher's end: EOF ends a worker nobody claimed
                cwd=os.getcwd(),
            )
            for k in range(n)
        ]

    def command(self) -> str:
        """The shell command Beam's runner runs for each worker: the client."""
        client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm_client.py")
        return (
            f"exec {shlex.quote(sys.executable)} -S {shlex.quote(client)} {shlex.quote(self.dir)}"
        )

    def close(self) -> None:
        """End the workers nobody claimed and remove the directory (claimed ones are the
        runner's: they end when it stops them)."""
        for p in self.procs:
            if p.stdin is not None and not p.stdin.closed:
                try:
                    p.stdin.close()
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)


def planned_workers(argv: list[str]) -> int:
    """How many local worker processes a ``gradum score`` command line will run, read from
    its words alone (before Beam is imported), by the rules of
    :func:`pipelines.job.runner.beam_options`: 0 for another runner or mode, a dry run, help,
    or a ``--config`` file (which can set Beam options; then no guess is made)."""
    from pipelines.job.command_line import available_cores, flag_value, named_runner

    if any(a in ("-h", "--help", "--dry-run") or a.startswith("--config") for a in argv):
        return 0
    if named_runner(argv) not in (None, "DirectRunner"):
        return 0
    mode = flag_value(argv, "--direct_running_mode")
    if mode not in (None, "multi_processing"):
        return 0
    given = flag_value(argv, "--direct_num_workers")
    if given is None:
        return min(available_cores(), 8)
    try:
        return max(0, int(given))
    except ValueError:
        return 0  # Beam will refuse it


def start_for(argv: list[str]) -> WarmPool | None:
    """Start the workers a ``gradum score`` command line will use (see the module
    docstring); None where it will use none, or when turned off."""
    global _POOL
    if os.environ.get("GRADUM_WARM_WORKERS") == "0" or _POOL is not None:
        return None
    if not hasattr(socket, "AF_UNIX"):
        return None  # no Unix sockets (Windows): Beam starts its workers itself
    n = planned_workers(argv)
    if n < 1:
        return None
    if len(tempfile.gettempdir()) + _SOCKET_NAMES > _SOCKET_PATH_MAX:
        return None  # a socket path that long cannot be bound
    _POOL = WarmPool(n)
    return _POOL


def confirm(workers: int) -> None:
    """Once the options are parsed: keep the pool only if the job runs exactly its number of
    local worker processes (``workers``; 0 when it runs none)."""
    if _POOL is not None and workers != _POOL.n:
        stop()


def active() -> bool:
    """Whether workers were started early for this process's job."""
    return _POOL is not None


def stop() -> None:
    """End the workers nobody claimed (the command's end)."""
    global _POOL
    pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()


def rewrite_environments(pipeline_proto) -> int:
    """Point the pipeline's Beam-worker subprocess environments at the pool's client; returns
    how many were rewritten (0 without a pool)."""
    if _POOL is None:
        return 0
    from apache_beam.portability import python_urns

    stock = f"{sys.executable} -m {BEAM_WORKER}".encode()
    rewritten = 0
    for env in pipeline_proto.components.environments.values():
        if env.urn == python_urns.SUBPROCESS_SDK and env.payload == stock:
            env.payload = _POOL.command().encode()
            rewritten += 1
    if rewritten:
        _LOG.info("%d local workers started early: Beam's runner claims them", _POOL.n)
    else:  # this Beam starts its workers some other way: free the cores at once
        _LOG.info("local workers started early are not used by this runner; ended")
        stop()
    return rewritten


def with_warm_workers(runner_cls: type) -> type:
    """``runner_cls`` (an FnApiRunner) whose subprocess workers are claimed from the pool."""

    class WarmWorkersRunner(runner_cls):
        def run_via_runner_api(self, pipeline_proto, options):
            rewrite_environments(pipeline_proto)
            return super().run_via_runner_api(pipeline_proto, options)

    WarmWorkersRunner.__name__ = WarmWorkersRunner.__qualname__ = f"Warm{runner_cls.__name__}"
    return WarmWorkersRunner
