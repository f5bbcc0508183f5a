"""``gradum demo``: the main job on the built-in corpus, then what a user looks at next."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from pipelines.cli import DEMO_INPUT


def run_demo(args: argparse.Namespace) -> int:
    from pipelines.score import JobConfig, JobError, run_job

    spec = DEMO_INPUT + (f"?limit={args.limit}" if args.limit else "")
    cfg = JobConfig(inputs=[spec], output=args.output, clusters=args.clusters, overwrite=True)
    print(f"== gradum demo: scoring {spec} -> {args.output}", flush=True)
    print(
        f"   signals: {', '.join(cfg.signals)}; embedding all-MiniLM-L6-v2 (offline); "
        f"k-means k={cfg.clusters}",
        flush=True,
    )
    try:
        run_job(cfg, list(getattr(args, "extra", []) or []))
    except JobError as exc:
        print(f"gradum demo: error: {exc}", file=sys.stderr)
        return 2
    from shards.cli import main as shards_main

    print("\n== gradum shards summary", args.output, flush=True)
    status = shards_main(["summary", args.output])
    print("\n== hardest records: gradum shards head --sort difficulty --desc -n 3", flush=True)
    status |= shards_main(
        [
            "head",
            args.output,
            "-n",
            "3",
            "--sort",
            "difficulty",
            "--desc",
            "--columns",
            "id,source,difficulty,readability,text",
        ]
    )
    if importlib.util.find_spec("sampler.cli") is not None:
        from sampler.cli import main as sampler_main

        print("\n== curriculum preview: gradum preview --strategy curriculum", flush=True)
        status |= sampler_main(
            [
                "preview",
                args.output,
                "--strategy",
                "curriculum",
                "--steps",
                "1000",
                "--batch-size",
                "64",
            ]
        )
    return status
