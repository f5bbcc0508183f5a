"""What a command line's Beam options say, read from its words without importing Beam (the
command line reads them before Beam is loaded: :mod:`pipelines.job.warm_workers`)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or ``taskset``'s
    share), not every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` (``--flag=V`` or ``--flag V``; the last one given), or None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def named_runner(beam_args: list[str]) -> str | None:
    """The ``--runner`` of a Beam command line (the last one given), or None."""
    return flag_value(beam_args, "--runner")
