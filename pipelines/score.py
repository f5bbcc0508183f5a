"""The scoring job: ``gradum score`` and ``python -m pipelines.score``.

inputs -> records (bad ones dead-lettered with their reason) -> scorers through
RunInference -> staging files (OUT/staging/, Arrow IPC) + order-free quantile sketches ->
optional spherical k-means over embeddings -> difficulty and bucket -> Arrow shards ->
manifest.json, written last (staging/ is removed after it).

Data movement: line files are cut into byte-range units and Parquet files into row-group units
(``readers.expand_inputs``), and each unit is read, scored and staged in one fused stage, so a
record's text crosses no Beam shuffle; only unit descriptors, staging-file descriptors, sketch
accumulators and dead letters do. When an input cannot be split (compressed files, saved or
streamed HF datasets, small built-in corpora), the job spreads its batches over the workers
with one Reshuffle instead.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipelines.records import stable_hash

DEFAULT_SIGNALS = "length,compression_ratio,lexical_diversity,readability,word_rarity"
# Length is a descriptor, not a difficulty signal: it stays out of the default weights.
_NOT_IN_DEFAULT_DIFFICULTY = {"chars", "words"}


@dataclass
class JobConfig:
    """Everything the job needs besides Beam's own options."""

    inputs: list[str]
    output: str
    signals: list[str] = field(default_factory=lambda: DEFAULT_SIGNALS.split(","))
    text_field: str = "text"
    id_field: str | None = None
    lm: str = "none"
    embedding: str = "none"
    clusters: int = 0
    difficulty: str | None = None
    buckets: int = 10
    batch_size: int = 256
    max_text_bytes: int = 1_000_000
    max_dead_letter_fraction: float = 0.01
    rows_per_shard: int = 100_000
    shard_bytes: int = 128 << 20  # about this many bytes of staged data per shard at most
    seed: int = 0
    overwrite: bool = False
    progress: bool = True
    keep_embeddings: bool = False
    sketch_error: float = 0.005
    reference_lm_samples: int = 2000
    reference_lm_steps: int = 300

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> JobConfig:
        """Every field of the same name in ``args``; ``--signals`` split, ``--no-progress`` flipped."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        given["inputs"] = list(args.inputs)
        given["signals"] = [s for s in args.signals.split(",") if s.strip()]
        given["progress"] = not args.no_progress
        return cls(**given)


class JobError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def prepare_output(out: str, overwrite: bool) -> None:
    """Refuse a complete dataset unless ``overwrite``; clear what a failed run left."""
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest):
        if not overwrite:
            raise JobError(
                f"{out} already holds a complete dataset; pass --overwrite to replace it"
            )
        os.remove(manifest)  # from here on the old dataset reads as incomplete
    if os.path.isdir(out):
        ours = {
            "shards",
            "dead_letter",
            "centroids.npy",
            "reference_lm",
            "staging",
            ".manifest.json.tmp",
        }
        foreign = [n for n in os.listdir(out) if n not in ours]
        if foreign:
            raise JobError(
                f"{out} exists and holds files that are not a gradum dataset "
                f"({', '.join(sorted(foreign)[:3])}); choose an empty or new directory"
            )
        for name in ("shards", "dead_letter", "centroids.npy", "staging"):
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    # shards/ marks the directory as a (so far incomplete) gradum dataset from the start.
    os.makedirs(os.path.join(out, "shards"), exist_ok=True)


def scorer_specs(cfg: JobConfig) -> list[tuple[str, dict[str, Any]]]:
    import scorers

    specs: list[tuple[str, dict[str, Any]]] = []
    for name in cfg.signals:
        if name in ("lm", "embedding"):
            raise JobError(f"choose model scorers with --lm / --embedding, not --signals {name}")
        if name not in scorers.available():
            raise JobError(f"unknown signal {name!r}; available: {scorers.available()}")
        specs.append((name, {}))
    if cfg.lm != "none":
        specs.append(("lm", {"model": cfg.lm}))
    embedding = cfg.embedding
    if cfg.clusters > 0 and embedding == "none":
        embedding = "default"
    if embedding != "none":
        specs.append(("embedding", {} if embedding == "default" else {"model": embedding}))
    if not specs:
        raise JobError("no signals to compute: give --signals, --lm or --embedding")
    return specs


def _beam_options(beam_args: list[str]):
    """Beam's options with gradum's local defaults: the DirectRunner, multi-process, one worker
    per core (up to 8); LOOPBACK for the embedded portable job server (no Docker needed).
    Options the user gave are kept as given."""
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        PortableOptions,
        StandardOptions,
    )

    options = PipelineOptions(list(beam_args))
    given = {a[2:].split("=", 1)[0] for a in beam_args if a.startswith("--")}
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or "DirectRunner"
    if "Direct" in standard.runner:
        direct = options.view_as(DirectOptions)
        if "direct_num_workers" not in given:
            direct.direct_num_workers = min(os.cpu_count() or 1, 8)
        if "direct_running_mode" not in given:
            direct.direct_running_mode = "multi_processing"
    if "Portable" in standard.runner and "environment_type" not in given:
        options.view_as(PortableOptions).environment_type = "LOOPBACK"
    return options


def _threads_per_worker(options) -> int | None:
    """Torch threads per local worker process: the cores divided among the workers."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    direct = options.view_as(DirectOptions)
    runner = options.view_as(StandardOptions).runner or ""
    if "Direct" not in runner or direct.direct_running_mode == "in_memory":
        return None
    workers = direct.direct_num_workers or (os.cpu_count() or 1)
    return max(1, (os.cpu_count() or 1) // workers)


def _train_reference(cfg: JobConfig) -> str:
    from pipelines.readers import read_sample
    from scorers.reference_lm import train_reference_lm

    texts = read_sample(cfg.inputs, cfg.reference_lm_samples)
    if len(texts) < 10:
        raise JobError("--lm reference needs at least 10 readable records to train on")
    path = os.path.join(cfg.output, "reference_lm")
    print(f"gradum: training the reference LM on {len(texts):,} records -> {path}", file=sys.stderr)
    return str(
        train_reference_lm(
            texts, path, steps=cfg.reference_lm_steps, seed=cfg.seed, progress=cfg.progress
        )
    )


def build_pipeline(
    pipeline,
    torch_threads,
    units,
    cfg: JobConfig,
    specs,
    columns,
    directions,
    weights,
    signals,
    embedding_dim,
    options_record,
):
    """Add the job's transforms to ``pipeline``."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference

    from pipelines import staging, steps, writers
    from pipelines.inference import ScorerModelHandler
    from pipelines.readers import is_fine_grained
    from pipelines.schema import MetaSchemaCombineFn

    side = beam.pvalue
    parsed = (
        pipeline
        | "Units" >> beam.Create(units)
        | "SpreadUnits" >> beam.Reshuffle()
        | "Read"
        >> beam.ParDo(
            steps.ReadFn(
                cfg.text_field,
                cfg.id_field,
                cfg.max_text_bytes,
                cfg.batch_size,
                progress_every=10.0 if cfg.progress else 0.0,
            )
        ).with_outputs("dead", "count", main="ok")
    )
    handler = ScorerModelHandler(
        specs, progress_every=10.0 if cfg.progress else 0.0, torch_threads=torch_threads
    )
    batches = parsed.ok
    if not all(is_fine_grained(u) for u in units):
        # A unit that cannot be split (a compressed file, a Hub stream) would keep one worker
        # busy alone: spread its batches. Small units are scored where they were read.
        batches = batches | "SpreadBatches" >> beam.Reshuffle()
    scored = (
        batches
        | "Score" >> RunInference(handler)
        | "SplitScored" >> beam.FlatMap(steps.split_scored).with_outputs("dead", main="ok")
    )
    rows = scored.ok
    scored_columns = [c for c in columns if c != "centroid_distance"]
    # Only these small summaries leave the scoring stage; the records go to staging files.
    staged = rows | "Stage" >> beam.ParDo(staging.StageFn(cfg.output, scored_columns))
    sketches = rows | "Sketch" >> beam.CombineGlobally(
        steps.SketchCombineFn(scored_columns, cfg.sketch_error)
    )
    meta_types = rows | "MetaTypes" >> beam.CombineGlobally(MetaSchemaCombineFn())
    n_rows = staged | "BatchSizes" >> beam.Map(lambda d: d["rows"]) | beam.CombineGlobally(sum)
    staged_list = side.AsList(staged)
    cluster_model = None
    if cfg.clusters > 0:
        sample_size = max(256 * cfg.clusters, 20_000)
        cluster_model = (
            staged
            | "Sample"
            >> beam.FlatMap(staging.sample_entries, cfg.seed, side.AsSingleton(n_rows), sample_size)
            | "CollectSample" >> beam.combiners.ToList()
            | "KMeans" >> beam.Map(steps.fit, cfg.clusters, cfg.seed)
        )
        distance_sketch = (
            staged
            | "Assign" >> beam.Map(staging.assign_staged, side.AsSingleton(cluster_model))
            | "SketchDistance"
            >> beam.CombineGlobally(steps.SketchCombineFn(["centroid_distance"], cfg.sketch_error))
        )
        sketches = (
            pipeline
            | "SketchesReady" >> beam.Create([None])
            | "MergeSketches"
            >> beam.Map(
                lambda _, a, b: {**a, **b},
                side.AsSingleton(sketches),
                side.AsSingleton(distance_sketch),
            )
        )
    n_bytes = (
        staged
        | "BatchBytes" >> beam.Map(lambda d: d["bytes"])
        | "SumBytes" >> (beam.CombineGlobally(sum))
    )
    n_shards = n_rows | "ShardCount" >> beam.Map(
        _shard_count, cfg.rows_per_shard, side.AsSingleton(n_bytes), cfg.shard_bytes
    )
    shards = (
        n_shards
        | "ShardIndices" >> beam.FlatMap(lambda n: list(range(n)))
        | "SpreadShards" >> beam.Reshuffle()
        | "WriteShards"
        >> beam.ParDo(
            writers.WriteShardFn(
                cfg.output,
                columns,
                directions=directions,
                weights=weights,
                n_buckets=cfg.buckets,
                clusters=cfg.clusters > 0,
                embedding_dim=embedding_dim,
            ),
            side.AsSingleton(n_shards),
            staged_list,
            side.AsSingleton(sketches),
            side.AsSingleton(meta_types),
        ).with_outputs("dead", main="shards")
    )
    # Each stage's dead letters are written on their own: no Flatten of PCollections made in
    # different stages (the multi-process DirectRunner lost elements of such a Flatten at 1e6
    # records in our benchmark; the manifest's accounting check caught it).
    dead_infos = [
        dead
        | f"KeyDead{stage}"
        >> beam.Map(lambda d: (stable_hash(f"{d['source']}\0{d['position']}") % 4, d))
        | f"GroupDead{stage}" >> beam.GroupByKey()
        | f"WriteDead{stage}" >> beam.Map(writers.write_dead_letters, cfg.output, stage.lower())
        for stage, dead in (("Read", parsed.dead), ("Score", scored.dead), ("Write", shards.dead))
    ]
    n_input = parsed.count | "CountInput" >> beam.CombineGlobally(sum)
    _ = (
        pipeline
        | "Commit" >> beam.Create([None])
        | "Manifest"
        >> beam.Map(
            writers.finalize,
            out_dir=cfg.output,
            shard_infos=side.AsList(shards.shards),
            dead_read=side.AsList(dead_infos[0]),
            dead_score=side.AsList(dead_infos[1]),
            dead_write=side.AsList(dead_infos[2]),
            n_input=side.AsSingleton(n_input),
            sketches=side.AsSingleton(sketches),
            cluster_model=side.AsSingleton(cluster_model) if cluster_model is not None else None,
            signals=signals,
            options=options_record,
            max_dead_fraction=cfg.max_dead_letter_fraction,
        )
    )


def _shard_count(n_rows: int, rows_per_shard: int, n_bytes: int, shard_bytes: int) -> int:
    """Enough hash shards for at most ``rows_per_shard`` rows and about ``shard_bytes`` bytes
    each (a shard is written as one file, never rotated, so shard indices cannot collide)."""
    return max(1, math.ceil(n_rows / rows_per_shard), math.ceil(n_bytes / shard_bytes))


def run_job(cfg: JobConfig, beam_args: list[str] | None = None) -> dict[str, Any]:
    """Run the job; return the manifest. Raises :class:`JobError` for user errors."""
    import apache_beam as beam

    import scorers
    from pipelines.difficulty import parse_weights

    if (
        cfg.clusters < 0
        or min(cfg.buckets, cfg.rows_per_shard, cfg.batch_size, cfg.shard_bytes) < 1
    ):
        raise JobError("--clusters must be >= 0; --buckets, --rows-per-shard, --batch-size >= 1")
    if not 0.0 <= cfg.max_dead_letter_fraction <= 1.0:
        raise JobError("--max-dead-letter-fraction must be in [0, 1]")
    if cfg.output.startswith(("gs://", "s3://")):
        raise JobError(
            "--output must be a local or mounted path (shards are committed by rename); "
            "on Dataflow mount the bucket with gcsfuse and pass /gcs/BUCKET/PATH "
            "(see infra/dataflow/README.md)"
        )
    from pipelines.readers import expand_inputs

    try:
        units = expand_inputs(cfg.inputs)  # fail early, before touching --output
    except (FileNotFoundError, ValueError) as exc:
        raise JobError(str(exc)) from None
    prepare_output(cfg.output, cfg.overwrite)
    if cfg.lm == "reference":
        cfg.lm = _train_reference(cfg)
    specs = scorer_specs(cfg)
    instances = [scorers.get(name, **params) for name, params in specs]
    columns: list[str] = []
    directions: dict[str, int] = {}
    signals: list[dict[str, Any]] = []
    embedding_dim = None
    for scorer in instances:
        for column, direction in scorer.outputs.items():
            signals.append(
                {
                    "name": column,
                    "scorer": scorer.name,
                    "version": scorer.version,
                    "direction": direction,
                    "params": scorer.describe(),
                }
            )
            if column == "embedding":
                continue
            columns.append(column)
            directions[column] = direction
    if cfg.clusters > 0:
        columns.append("centroid_distance")
        directions["centroid_distance"] = +1
        signals.append(
            {
                "name": "centroid_distance",
                "scorer": "kmeans",
                "version": "1",
                "direction": 1,
                "params": {"k": cfg.clusters, "metric": "cosine"},
            }
        )
    if cfg.keep_embeddings:
        model = next((s for s in instances if s.name == "embedding"), None)
        embedding_dim = model.dim if model else None
    try:
        default_pool = {c: d for c, d in directions.items() if c not in _NOT_IN_DEFAULT_DIFFICULTY}
        weights = parse_weights(cfg.difficulty, directions if cfg.difficulty else default_pool)
        if not weights:
            weights = parse_weights(None, directions)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    beam_options = _beam_options(beam_args or [])
    options_record = dict(
        asdict(cfg),
        beam_options=beam_options.get_all_options(drop_default=True),
        difficulty_weights=weights,
    )
    started = time.monotonic()
    pipeline = beam.Pipeline(options=beam_options)
    build_pipeline(
        pipeline,
        _threads_per_worker(beam_options),
        units,
        cfg,
        specs,
        columns,
        directions,
        weights,
        signals,
        embedding_dim,
        options_record,
    )
    result = pipeline.run()
    result.wait_until_finish()
    elapsed = time.monotonic() - started
    from shards import read_manifest

    manifest = read_manifest(cfg.output)
    counts = manifest["counts"]
    print(
        f"gradum: {counts['input']:,} records read, {counts['written']:,} written, "
        f"{counts['dead_letter']:,} dead-lettered in {elapsed:.1f}s "
        f"({counts['input'] / max(elapsed, 1e-9):,.0f} docs/s) -> {cfg.output}",
        file=sys.stderr,
    )
    return manifest


def _explain(exc: BaseException) -> str | None:
    """The user-facing message inside a Beam failure, if it is one of ours."""
    from pipelines.writers import DeadLetterFractionError

    if isinstance(exc, DeadLetterFractionError | JobError):
        return str(exc).split(" [while running")[0]
    text = str(exc)
    for marker in ("DeadLetterFractionError:", "JobError:"):
        if marker in text:
            return text.split(marker, 1)[1].strip().splitlines()[0]
    return None


def run_from_args(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    try:
        run_job(JobConfig.from_args(args), beam_args)
    except JobError as exc:
        print(f"gradum score: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - Beam wraps worker errors; show ours plainly
        message = _explain(exc)
        if message is None:
            raise
        print(f"gradum score: failed: {message}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from pipelines.cli import add_score_arguments

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.score", description=__doc__.splitlines()[0]
    )
    add_score_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    return run_from_args(args, beam_args)


if __name__ == "__main__":
    sys.exit(main())
