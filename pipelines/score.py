"""``python -m pipelines.score``: the scoring job from the command line (``gradum score``).

The job itself lives in :mod:`pipelines.job.launch`; its settings in :mod:`pipelines.config`.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.config import DEFAULT_SIGNALS, JobConfig, JobError
from pipelines.job.launch import run_console_job, run_from_args, run_job

__all__ = [
    "DEFAULT_SIGNALS",
    "JobConfig",
    "JobError",
    "run_job",
    "run_console_job",
    "run_from_args",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    from pipelines.cli import add_score_arguments

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.score", description="Score INPUTs and write Arrow shards."
    )
    add_score_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    return run_from_args(args, beam_args)


if __name__ == "__main__":
    sys.exit(main())
