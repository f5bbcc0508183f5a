"""Entry point of the ``gradum`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from gradum_cli.previews import curriculum_preview, report_sections

# Each module exposes ``register(subparsers)``; registering must not import heavy libraries.
_COMMAND_MODULES = ("pipelines.cli", "shards.cli", "sampler.cli")


def _version() -> str:
    try:
        return version("gradum")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradum",
        description="Score, cluster and serve text corpora by difficulty.",
    )
    parser.add_argument("--version", action="version", version=f"gradum {_version()}")
    # `gradum shards report` and `gradum demo` add the sampler's preview to the page this way,
    # and `gradum demo` prints it: pipelines may not import sampler, the dispatcher may.
    parser.set_defaults(report_sections=report_sections, curriculum_preview=curriculum_preview)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error("unrecognized arguments: " + " ".join(extra))
    args.extra = extra
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def run() -> None:
    """The ``gradum`` command: :func:`main`, then the process ends without Python's
    finalisation (:mod:`pipelines.console.process_exit`)."""
    from pipelines.console.process_exit import exit_process

    exit_process(main())


if __name__ == "__main__":
    run()
