"""`gradum shards ...`: inspect a dataset from the shell.

Exit codes: 0 success; 1 ``validate`` found problems; 2 error (missing path, not a dataset,
incomplete dataset, unknown column, bad arguments). Importing this module is light: numpy
and pyarrow are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

EPILOG = (
    "exit status: 0 ok, 1 validation problems, 2 error (missing path, not a dataset, "
    "incomplete dataset, bad arguments)"
)


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    """A command function that imports ``shards.commands`` only when it runs."""

    def run(args: argparse.Namespace) -> int:
        from . import commands

        return commands.run_guarded(getattr(commands, name), args)

    run.__name__ = name
    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``shards`` subcommand (summary/head/hist/clusters/validate/report/reorder)."""
    p = subparsers.add_parser(
        "shards", help="inspect a gradum dataset (Arrow shards + manifest)", epilog=EPILOG
    )
    _fill(p)


def _fill(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="shards_command", metavar="COMMAND")
    cache = argparse.ArgumentParser(add_help=False)
    add_cache_arguments(cache)
    p.set_defaults(func=_no_command(p))

    s = sub.add_parser(
        "summary", parents=[cache], help="rows, shards, bytes, accounting, per-signal stats"
    )
    s.add_argument("out", metavar="OUT", help="dataset directory, or gs:// / s3:// prefix")
    s.add_argument("--json", action="store_true", help="print JSON for scripts")
    s.set_defaults(func=_lazy("cmd_summary"))

    h = sub.add_parser("head", parents=[cache], help="first rows, optionally filtered and sorted")
    h.add_argument("out", metavar="OUT")
    h.add_argument("-n", type=int, default=10, help="rows to show (default 10)")
    h.add_argument("--sort", metavar="COLUMN", help="sort by this column (ascending)")
    h.add_argument("--desc", action="store_true", help="sort descending")
    h.add_argument("--columns", metavar="A,B,...", help="comma-separated columns to show")
    h.add_argument(
        "--where",
        "--filter",
        dest="where",
        action="append",
        default=[],
        metavar="EXPR",
        help="filter like 'difficulty>0.8', 'cluster==3', 'lang!=en' (repeatable; all must hold)",
    )
    h.add_argument("--width", type=int, default=60, help="max characters per text cell")
    h.set_defaults(func=_lazy("cmd_head"))

    g = sub.add_parser("hist", parents=[cache], help="histogram of a numeric column")
    g.add_argument("out", metavar="OUT")
    g.add_argument("column", metavar="COLUMN")
    g.add_argument("--bins", type=int, default=20)
    g.add_argument("--png", metavar="FILE", help="also save a PNG (needs matplotlib)")
    g.set_defaults(func=_lazy("cmd_hist"))

    c = sub.add_parser(
        "clusters", parents=[cache], help="per-cluster size, mean difficulty, example text"
    )
    c.add_argument("out", metavar="OUT")
    c.add_argument("--width", type=int, default=60, help="max characters of the example text")
    c.set_defaults(func=_lazy("cmd_clusters"))

    v = sub.add_parser(
        "validate", parents=[cache], help="check sizes, hashes, rows, schemas, accounting"
    )
    v.add_argument("out", metavar="OUT")
    v.set_defaults(func=_lazy("cmd_validate"))

    r = sub.add_parser("report", parents=[cache], help="one self-contained HTML page")
    r.add_argument("out", metavar="OUT")
    r.add_argument("--html", metavar="FILE", required=True, help="where to write the page")
    r.set_defaults(func=_lazy("cmd_report"))

    o = sub.add_parser(
        "reorder",
        parents=[cache],
        help="rewrite a dataset sorted by difficulty (and cluster) so batches touch few shards",
        description="Write a copy of OUT to DEST with rows sorted by --by (stable), every shard "
        "but the last holding --rows-per-shard rows, an index beside each shard, the same "
        "accounting, and the layout recorded in the manifest.",
    )
    o.add_argument("out", metavar="OUT", help="the dataset to read")
    o.add_argument("dest", metavar="DEST", help="a new directory or gs:// / s3:// prefix")
    o.add_argument(
        "--by",
        default="difficulty",
        metavar="KEYS",
        help="comma-separated sort keys among difficulty, bucket, cluster (default: "
        "difficulty; 'cluster,difficulty' groups clusters for a bandit over clusters)",
    )
    o.add_argument(
        "--rows-per-shard",
        type=int,
        default=None,
        metavar="N",
        help="rows per output shard (default: the input's mean)",
    )
    o.set_defaults(func=_lazy("cmd_reorder"))


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir``, ``--cache-limit`` and the bucket connection options."""
    from .storage_options import add_storage_arguments

    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where shards of a gs:// or s3:// dataset are fetched to and checked "
        "(default: $GRADUM_CACHE or ~/.cache/gradum)",
    )
    parser.add_argument(
        "--cache-limit",
        metavar="SIZE",
        help="bound the fetched shards, e.g. 20GB or 512MiB (default: no bound)",
    )
    add_storage_arguments(parser)


def _no_command(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m shards.cli summary OUT`` (same as ``gradum shards``)."""
    p = argparse.ArgumentParser(prog="gradum shards", epilog=EPILOG)
    _fill(p)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
