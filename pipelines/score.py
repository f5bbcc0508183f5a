"""``python -m pipelines.score``: the scoring job from the command line (``gradum score``).

The job itself lives in :mod:`pipelines.job.launch`; its settings in :mod:`pipelines.config`.
"""

from __future__ import annotations

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
    from pipelines.cli import run_score_command

    return run_score_command(
        list(sys.argv[1:] if argv is None else argv), "python -m pipelines.score"
    )


if __name__ == "__main__":
    from pipelines.console.process_exit import exit_process

    exit_process(main())
