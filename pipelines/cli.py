"""``gradum score`` and ``gradum demo``: argument parsing only; Beam loads when a job runs."""

from __future__ import annotations

import argparse

from pipelines.demo import DEMO_INPUT


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """The gradum options of the scoring job (Beam's own options pass through untouched)."""
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="JSONL(.gz) / Parquet / text files or globs, a saved HF dataset "
        "directory, hf:NAME[:SPLIT] (streamed from the Hub), or builtin:NAME",
    )
    parser.add_argument("--output", "-o", default=None, help="dataset directory to write")
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML or JSON file of options (long names, dashes or underscores; Beam's too); "
        "the command line overrides it",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (inputs, read units, estimated rows, shards, signals, bounds, "
        "runner) and write nothing",
    )
    parser.add_argument(
        "--signals",
        default="length,compression_ratio,lexical_diversity,readability,word_rarity",
        help="comma-separated scorers (see scorers.available())",
    )
    parser.add_argument("--text-field", default="text")
    parser.add_argument(
        "--id-field",
        default=None,
        help="field holding the record id (default: the record's own 'id' when it has one, "
        "else a hash of source and position; 'none': always that hash). Repeated ids are "
        "dead-lettered",
    )
    parser.add_argument(
        "--lm",
        default="none",
        help="causal LM for perplexity/confidence/angle_concentration: a hub id, "
        "a local path, 'reference' (train a small one on the input) or 'none'",
    )
    parser.add_argument(
        "--embedding",
        default="none",
        help="'default' (all-MiniLM-L6-v2, offline), a model path / hub id, or "
        "'none'; needed for --clusters",
    )
    parser.add_argument(
        "--embedding-backend",
        default="auto",
        choices=["auto", "torch", "onnx", "onnx-int8", "openvino"],
        help="inference backend of the embedding model: auto = torch on CUDA, else the "
        "fastest installed of onnx-int8 / openvino / onnx (extras gradum[embed-fast], "
        "gradum[embed-openvino]), else torch; exported locally to $GRADUM_CACHE",
    )
    parser.add_argument(
        "--embedding-max-seq-length",
        type=int,
        default=None,
        metavar="N",
        help="word pieces per text the embedding model reads (default: the model's own, "
        "256 for all-MiniLM-L6-v2)",
    )
    parser.add_argument(
        "--clusters",
        type=int,
        default=0,
        help="k for spherical k-means over embeddings (0: no clustering)",
    )
    parser.add_argument(
        "--difficulty",
        default=None,
        help="signals and weights for difficulty, e.g. 'perplexity:2,readability:1' "
        "(default: every scalar signal but 'words', weight 1)",
    )
    parser.add_argument(
        "--proxy",
        default=None,
        metavar="SIGNAL",
        help="score SIGNAL (e.g. perplexity, with the reference LM unless --lm names one) on a "
        "sample only and predict it for every record from the cheap signals (and, for an LM "
        "signal, the text's frequencies of the LM's tokens): column SIGNAL_proxy. '--difficulty proxy:SIGNAL' also makes it the difficulty",
    )
    parser.add_argument(
        "--proxy-fraction",
        type=float,
        default=0.02,
        help="share of the records the --proxy signal is computed on (default 0.02)",
    )
    parser.add_argument("--buckets", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-text-bytes", type=int, default=1_000_000)
    parser.add_argument("--max-dead-letter-fraction", type=float, default=0.01)
    parser.add_argument(
        "--rows-per-shard",
        type=int,
        default=100_000,
        help="about this many rows per shard: the shard count is planned from the input's "
        "size before the job starts",
    )
    parser.add_argument(
        "--num-shards",
        type=int,
        default=0,
        help="number of hash shards (default 0: planned from file sizes, Parquet footers "
        "and --rows-per-shard)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the dataset or unfinished run at --output (only what gradum wrote "
        "there is deleted)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run at --output (killed or failed): its finished parts "
        "are reused, the rest is scored; same options and inputs required",
    )
    parser.add_argument(
        "--keep-embeddings", action="store_true", help="store the embedding vectors in the shards"
    )
    parser.add_argument(
        "--reference-lm-steps", type=int, default=300, help="training steps of --lm reference"
    )
    parser.add_argument(
        "--reference-lm-samples",
        type=int,
        default=2000,
        help="records --lm reference trains on (the first N readable ones)",
    )
    parser.add_argument("--no-progress", action="store_true")
    add_console_arguments(parser)
    from shards.storage_options import add_storage_arguments

    add_storage_arguments(parser)


def score_parser(prog: str = "gradum score") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        allow_abbrev=False,
        description="Score INPUTs and write Arrow shards + manifest to --output. Options gradum "
        "does not define must be Beam's (--runner, --direct_num_workers, --project, ...).",
    )
    add_score_arguments(parser)
    return parser


def parse_score_args(argv: list[str], prog: str = "gradum score"):
    """``(args, beam_args)`` of a ``gradum score`` command line, its ``--config`` applied and
    every option checked (:mod:`pipelines.options`); raises ``OptionError``."""
    from pipelines.options import OptionError, apply_config, check_beam_args
    from shards.storage_options import StorageOptions

    parser = score_parser(prog)
    args, beam_args = parser.parse_known_args(argv)
    beam_args = apply_config(parser, args, argv, beam_args)
    if not args.inputs:
        raise OptionError("no INPUT given (on the command line or as inputs: in --config)")
    if not args.output:
        raise OptionError("--output is required (on the command line or in --config)")
    try:
        storage = StorageOptions.from_args(args)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    check_beam_args(beam_args, parser)
    return args, [*storage.beam_args(), *beam_args]


def add_console_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the libraries' output goes: a log file, and the console too with -v."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show Beam's, the workers' and the model libraries' logging on the console",
    )
    parser.add_argument(
        "--log-file",
        default=None,
        metavar="PATH",
        help="log file (default: OUT/gradum.log for a local output, else a temporary file)",
    )


def run_score_command(argv: list[str], prog: str = "gradum score") -> int:
    """``gradum score ARGV`` / ``python -m pipelines.score ARGV``: a refused option is one
    line on stderr, exit 2, nothing written."""
    from pipelines.job import warm_workers

    warm_workers.start_for(argv)  # first: they import Beam while this process does
    try:
        return _score_command(argv, prog)
    finally:
        warm_workers.stop()


def _score_command(argv: list[str], prog: str) -> int:
    import sys

    from pipelines.job import warm_workers
    from pipelines.options import OptionError

    try:
        args, beam_args = parse_score_args(argv, prog)
    except OptionError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        from pipelines.job.dry_run import print_plan

        return print_plan(args, beam_args, prog)
    from apache_beam.options.pipeline_options import DirectOptions

    from pipelines.job.launch import run_from_args
    from pipelines.job.runner import beam_options, workers_in_subprocesses
    from shards.heap import tune_heap

    options = beam_options(beam_args)
    subprocesses = workers_in_subprocesses(options)
    warm_workers.confirm(options.view_as(DirectOptions).direct_num_workers if subprocesses else 0)
    if subprocesses:
        tune_heap()  # this process ends with the command and scores nothing (shards.heap)
    return run_from_args(args, beam_args)


def _run_score(args: argparse.Namespace) -> int:
    argv = list(getattr(args, "argv", None) or [])
    return run_score_command(argv[argv.index("score") + 1 :] if "score" in argv else argv)


def _run_demo(args: argparse.Namespace) -> int:
    import sys

    from pipelines.demo import run_demo
    from pipelines.options import OptionError, check_beam_args

    try:
        check_beam_args(list(getattr(args, "extra", []) or []), score_parser())
    except OptionError as exc:
        print(f"gradum demo: error: {exc}", file=sys.stderr)
        return 2
    return run_demo(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    score = subparsers.add_parser(
        "score",
        allow_abbrev=False,
        help="run the Beam scoring job: inputs -> scored, clustered Arrow shards",
        description="Score INPUTs and write Arrow shards + manifest to --output. Unknown "
        "options go to Beam (--runner, --direct_num_workers, --project, ...).",
    )
    add_score_arguments(score)
    score.set_defaults(func=_run_score, accepts_extra=True)

    demo = subparsers.add_parser(
        "demo",
        help=f"score {DEMO_INPUT}, summarise the shards, preview a curriculum",
    )
    demo.add_argument("--output", "-o", default="gradum-demo-out")
    demo.add_argument("--limit", type=int, default=None, help="score only the first N records")
    demo.add_argument("--clusters", type=int, default=8, help="k-means clusters (0: none)")
    add_console_arguments(demo)
    demo.set_defaults(func=_run_demo, accepts_extra=True)
