"""``gradum score --dry-run``: the plan a job would run, and nothing written.

It goes as far as the launcher goes before it writes: the options checked, the inputs listed
and sized from metadata, an input inside the output refused; then the read units are cut here
(the job itself cuts them on its workers), and the signals, the difficulty weights, the
bounded constants and the runner are printed. The output is not checked beyond that (checking
it writes a probe object).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from pipelines.config import JobConfig, JobError

MAX_LISTED = 8


def describe(cfg: JobConfig, beam_args: list[str]) -> list[str]:
    """The plan as lines of text."""
    from pipelines.job.dedupe import plan_buckets
    from pipelines.job.launch import plan_job
    from pipelines.job.runner import local_workers
    from pipelines.model.proxy import MAX_FIT_ROWS
    from pipelines.model.signals import difficulty_weights, signal_set
    from pipelines.plan.units import Sizing, plan_units

    job = plan_job(cfg, beam_args)
    plan = job.plan
    sizing = Sizing.plan(
        rows=plan.rows, nbytes=plan.bytes, rows_per_shard=cfg.rows_per_shard,
        shard_bytes=cfg.shard_bytes, num_shards=cfg.num_shards,
        bytes_per_record=plan.bytes_per_record,
    )  # fmt: skip
    units = plan_units(plan, sizing)
    kinds = Counter(u[0] for u in units)
    whole = kinds.pop("whole", 0)
    sig = signal_set(cfg, job.specs) if cfg.lm != "reference" else None
    options = job.options.get_all_options(drop_default=True)
    runner = options.get("runner") or "DirectRunner"
    lines = [
        f"inputs: {len(cfg.inputs)} spec(s), {len(plan.files):,} file(s), "
        f"{len(plan.sources):,} other source(s)",
    ]
    lines += [f"  {path} ({size:,} bytes)" for _, path, size in plan.files[:MAX_LISTED]]
    if len(plan.files) > MAX_LISTED:
        lines.append(f"  ... and {len(plan.files) - MAX_LISTED:,} more")
    lines += [f"  {_source(s)}" for s in plan.sources[:MAX_LISTED]]
    rows = f"{plan.rows:,} ({'exact' if plan.exact else 'estimated from sizes'})"
    lines += [
        f"estimated rows: {rows}; bytes: {plan.bytes:,}",
        "read units (= parts = shards): "
        + ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
        + (
            f"; {whole} read whole, then cut into parts of {sizing.part_rows:,} rows"
            if whole
            else ""
        ),
        f"part size: at most {sizing.part_rows:,} rows and {sizing.part_bytes:,} bytes of input",
    ]
    if sig is not None:
        weights = difficulty_weights(cfg, sig.directions)
        lines.append(f"signals: {', '.join(sig.columns)}")
        lines.append("difficulty: " + ", ".join(f"{k} x{v:g}" for k, v in weights.items()))
    else:
        lines.append("signals: the CPU signals, and perplexity, confidence, angle_concentration "
                     "from a reference LM trained on the first records")  # fmt: skip
    dedupe = plan_buckets(plan.rows, plan.streamed) if cfg.id_field != "none" else 0
    lines += [
        "bounds: k-means sample "
        + (
            f"{max(256 * cfg.clusters, 20_000):,} rows (k = {cfg.clusters})"
            if cfg.clusters
            else "-"
        )
        + f"; proxy fit rows {MAX_FIT_ROWS:,}" * bool(cfg.proxy)
        + f"; repeated ids in {dedupe:,} buckets" * bool(dedupe)
        + f"; dead letters at most {cfg.max_dead_letter_fraction:g} of the input",
        f"runner: {runner}"
        + (" (local workers: a progress bar)" if local_workers(job.options) else ""),
        f"output: {cfg.output} (nothing written: --dry-run)",
    ]
    return lines


def _source(source: tuple) -> str:
    kind = source[0]
    if kind == "graded":
        _, _, rest, start, n = source
        return f"builtin:graded rows {start:,}-{start + n:,}{rest.replace('&', ' ')}"
    if kind == "hf_disk":
        return f"saved dataset {source[2]} ({sum(r for _, r in source[3]):,} rows)"
    if kind == "hf_hub":
        return f"hf:{source[2]} (streamed; its size is a guess)"
    return str(source[2])


def print_plan(args: argparse.Namespace, beam_args: list[str], prog: str = "gradum score") -> int:
    try:
        lines = describe(JobConfig.from_args(args), beam_args)
    except JobError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
