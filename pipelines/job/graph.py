"""The scoring job's graph, as a few composite transforms in the order they run.

``ReadParts`` (sources -> read units -> batches of validated records, part by part) ->
``ScoreBatches`` (every signal) -> ``StageParts`` (one staging object and summary per part;
reading, scoring and staging are one fused stage: record text crosses no shuffle) ->
``FinishShards`` (the bounded samples and fits, repeated ids, rank and value sketches of the
rows that will be written, a shard and an index part per part, then check, clear staging
and the manifest, written last). The public ``ScoreTexts`` and ``WriteShards``
(:mod:`pipelines.transforms`) are made of the same pieces.

What grows with what: every step works per part or per bucket of ids, or combines bounded
accumulators; no step gathers a number of elements that grows with the records onto one
worker (tests/test_graph_bounds.py checks it from the graph).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import apache_beam as beam

from pipelines.io.row_schema import MetaSchemaCombineFn
from pipelines.job import commit, samples
from pipelines.job.dedupe import FindRepeatedIds
from pipelines.job.rank_guide import GuideCombineFn
from pipelines.job.read import ReadPart
from pipelines.job.signal_stats import RankSketches, SketchCombineFn
from pipelines.job.stage import TAGS, StagePart
from pipelines.job.totals import RuntimeCombineFn, SumFields, Total
from pipelines.job.write import KeptColumns, WriteShard
from pipelines.model import clustering
from pipelines.model import proxy as proxy_model
from pipelines.plan.units import Sizing, chunk_whole, expand_file, expand_source


@dataclass
class Layout:
    """What the transforms share: where things go, the signal columns, how difficulty is made
    of them, and the bounded constants."""

    out_dir: str
    staging: str  # OUT/staging/<run id>
    columns: list[str]  # every signal column, centroid_distance and the proxy included
    directions: dict[str, int]
    weights: dict[str, float]
    n_buckets: int
    sizing: Sizing
    keep_embeddings: bool = False
    sketch_error: float = 0.005
    rank_error: float = 0.001
    clusters: int = 0
    kmeans_sample: int = 20_000
    seed: int = 0
    proxy_target: str | None = None  # the expensive signal a learned proxy stands in for
    proxy_features: tuple[str, ...] = ()
    proxy_tokens: str | None = None  # the LM whose tokenizer gives token features
    dedupe_buckets: int = 0  # 0: ids are generated, unique by construction
    estimated_rows: int = 0
    rows_guessed: bool = False
    job_token: str = ""
    progress_dir: str | None = None
    scored_columns: list[str] = field(default_factory=list)  # the columns scorers produce


class ReadParts(beam.PTransform):
    """Sources -> batch elements of validated records, part by part (:mod:`..read`)."""

    def __init__(self, layout: Layout, read: ReadPart) -> None:
        super().__init__()
        self.layout, self.read = layout, read

    def expand(self, sources):
        sizing = self.layout.sizing
        return (
            sources
            | "ExpandSources" >> beam.FlatMap(expand_source, sizing)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ExpandFiles" >> beam.FlatMap(expand_file, sizing)
            | "ChunkWhole" >> beam.FlatMap(chunk_whole, sizing)
            | "SpreadUnits" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(self.read)
        )


def scoring_steps(specs, sampled, threads, job_token) -> list[tuple[str, object]]:
    """The CPU signals together in one DoFn, then one RunInference handler per model."""
    from pipelines.model.inference import ScoreSignals

    cpu = [(n, p) for n, p in specs if n not in ("lm", "embedding")]
    steps: list[tuple[str, object]] = []
    if cpu:
        steps.append(("Signals", ScoreSignals(cpu, job_token=job_token, sampled=sampled)))
    models = [(n, p) for n, p in specs if n in ("lm", "embedding")]
    if models:
        from pipelines.model.handlers import ScorersHandler  # imports apache_beam.ml, torch

        for name, params in models:
            handler = ScorersHandler(
                [(name, params)], torch_threads=threads, job_token=job_token, sampled=sampled
            )
            steps.append(("LM" if name == "lm" else name.title(), handler))
    return steps


def runs_models(steps: list[tuple[str, object]]) -> bool:
    """Whether :func:`scoring_steps` holds a model (a RunInference handler, not a DoFn)."""
    return any(not isinstance(step, beam.DoFn) for _, step in steps)


class ScoreBatches(beam.PTransform):
    """Batch elements -> the same with every signal column added: the CPU signals in one
    DoFn, each model scorer through RunInference (:func:`scoring_steps`)."""

    def __init__(self, steps: list[tuple[str, object]]) -> None:
        super().__init__()
        self.steps = steps

    def expand(self, batches):
        for label, step in self.steps:  # a DoFn (CPU signals) or a ModelHandler (a model)
            if isinstance(step, beam.DoFn):
                batches = batches | f"Score{label}" >> beam.ParDo(step)
            else:
                from apache_beam.ml.inference.base import RunInference  # imports torch

                batches = batches | f"Score{label}" >> RunInference(step)
        return batches


class StageParts(beam.PTransform):
    """Scored batch elements -> ``{"parts": part infos, tag: piece...}``: the summary's pieces
    by tag (:data:`..stage.TAGS`). ``claimed``: a one-element PCollection the staging must wait for
    (the run marker, when the output is claimed inside the pipeline). ``models``: whether a
    model scorer runs before it, in the same stage (then glibc's heap stays adaptive)."""

    def __init__(self, layout: Layout, claimed=None, models: bool = True) -> None:
        super().__init__()
        self.layout, self.claimed, self.models = layout, claimed, models

    def expand(self, batches):
        layout = self.layout
        kmeans = None
        if layout.clusters > 0:
            kmeans = (layout.seed, layout.kmeans_sample, layout.estimated_rows, layout.rows_guessed)
        proxy = None
        if layout.proxy_target:
            proxy = (
                layout.proxy_target,
                list(layout.proxy_features),
                layout.seed,
                proxy_model.MAX_FIT_ROWS,
                layout.estimated_rows,
                layout.rows_guessed,
            )
        stage = StagePart(
            out_dir=layout.out_dir,
            staging=layout.staging,
            columns=layout.scored_columns,
            dedupe_buckets=layout.dedupe_buckets,
            kmeans=kmeans,
            proxy=proxy,
            guide=(layout.estimated_rows, layout.rows_guessed),
            job=layout.job_token,
            progress_dir=layout.progress_dir,
            models=self.models,
        )
        gate = {"claimed": _side(self.claimed)} if self.claimed is not None else {}
        out = batches | "Stage" >> beam.ParDo(stage, **gate).with_outputs(*TAGS, main="parts")
        return {tag: out[tag] for tag in ("parts", *TAGS)}


class FitClusters(beam.PTransform):
    """Offered sample rows -> ``{"centroids", "info"}`` (one element), from the bounded
    bottom-k sample (:mod:`pipelines.job.samples`)."""

    def __init__(self, k: int, seed: int, sample_size: int) -> None:
        super().__init__()
        self.k, self.seed, self.sample_size = k, seed, sample_size

    def expand(self, offered):
        return (
            offered
            | "BottomK" >> beam.CombineGlobally(samples.BottomKCombineFn(self.sample_size))
            | "KMeans" >> beam.Map(clustering.fit_sample, self.k, self.seed)
        )


class FitProxy(beam.PTransform):
    """Offered proxy rows -> ``{"model", "info", ...}`` (one element)."""

    def __init__(self, layout: Layout, counts) -> None:
        super().__init__()
        self.layout, self.counts = layout, counts

    def expand(self, offered):
        layout = self.layout
        sampled = Total(self.counts, "CountSample", sum)
        return (
            offered
            | "BottomK" >> beam.CombineGlobally(samples.BottomKCombineFn(proxy_model.MAX_FIT_ROWS))
            | "Fit"
            >> beam.Map(
                proxy_model.fit_job_sample,
                layout.proxy_target,
                list(layout.proxy_features),
                layout.seed,
                layout.proxy_tokens,
                layout.job_token,
                sampled=sampled.side(),
            )
        )


def _side(pcoll):
    return beam.pvalue.AsSingleton(pcoll) if pcoll is not None else None


def build(pipeline, layout: Layout, sources: list, *, read: ReadPart, steps, commit_args):
    """The whole job on ``pipeline``: sources -> parts read, scored and staged where they
    land -> shards and the manifest. Returns the manifest step's output."""
    staged = (
        pipeline
        | "Sources" >> beam.Create(sources)
        | "ReadParts" >> ReadParts(layout, read)
        | "ScoreBatches" >> ScoreBatches(steps)
        | "StageParts" >> StageParts(layout, models=runs_models(steps))
    )
    return staged | "FinishShards" >> FinishShards(layout, commit_args)


class FinishShards(beam.PTransform):
    """The staged parts (the tagged outputs of :class:`StageParts`) -> the samples and fits,
    repeated ids, rank and value sketches, a shard and an index part per part, then the
    commit (check, clear staging, manifest). ``extra_dead``: dead-letter file infos written
    before staging (``WriteShards``' input dead letters), counted as input and dead letters."""

    def __init__(self, layout: Layout, commit_args: dict, extra_dead=None) -> None:
        super().__init__()
        self.layout, self.commit_args, self.extra_dead = layout, dict(commit_args), extra_dead

    def expand(self, staged):
        layout = self.layout
        parts = staged["parts"]
        losers = None
        if layout.dedupe_buckets:
            repeated = staged["ids"] | "RepeatedIds" >> FindRepeatedIds()
            losers = beam.pvalue.AsMultiMap(repeated)
        model = None
        if layout.clusters > 0:
            model = staged["kmeans"] | "FitClusters" >> FitClusters(
                layout.clusters, layout.seed, layout.kmeans_sample
            )
        fitted = None
        if layout.proxy_target:
            fitted = staged["proxy"] | "FitProxy" >> FitProxy(layout, staged["proxy_count"])
        runtime = Total(staged["runtime"], "WorkerRuntime", RuntimeCombineFn())
        meta_types = Total(staged["meta"], "MetaTypes", MetaSchemaCombineFn())
        kept = staged["columns"] | "KeptColumns" >> beam.ParDo(
            KeptColumns(
                layout.columns,
                needs_rows=model is not None or fitted is not None,
                staging=layout.staging,
            ),
            losers=losers,
            model=_side(model),
            proxy=_side(fitted),
        ).with_outputs("columns", main="kept")
        sketches = Total(
            kept.columns, "ValueSketches", SketchCombineFn(layout.columns, layout.sketch_error)
        )
        guide = Total(staged["guide"], "RankGuide", GuideCombineFn())
        rank_sketches = RankSketches(
            kept.kept, "RankSketches", list(layout.weights), layout.rank_error, guide=guide.pcoll
        )
        written = parts | "WriteShards" >> beam.ParDo(
            WriteShard(
                layout.out_dir,
                layout.columns,
                directions=layout.directions,
                weights=layout.weights,
                n_buckets=layout.n_buckets,
                keep_embeddings=layout.keep_embeddings,
            ),
            rank_sketches.side(),
            meta_types.side(),
            losers=losers,
            model=_side(model),
            proxy=_side(fitted),
        ).with_outputs("dead", main="shards")
        return _commit(
            parts.pipeline,
            layout,
            parts,
            written,
            (sketches, rank_sketches, model, fitted, runtime),
            self.commit_args,
            self.extra_dead,
        )


def _commit(pipeline, layout, parts, written, fits, commit_args, extra_dead=None):
    side = beam.pvalue
    sketches, rank_sketches, model, fitted, runtime = fits
    if extra_dead is None:
        extra_dead = pipeline | "NoExtraDead" >> beam.Create([])
    extra_rows = Total(
        extra_dead | "ExtraDeadRows" >> beam.Map(lambda d: (d["rows"],)),
        "SumExtraDeadRows",
        SumFields(1),
    )
    part_counts = parts | "PartCounts" >> beam.Map(
        lambda p: (p["n_input"], sum(d["rows"] for d in p["dead"]), int(p["reused"]))
    )
    staged_counts = Total(part_counts, "SumPartCounts", SumFields(3))
    written_rows = Total(
        written.shards | "ShardRows" >> beam.Map(lambda s: (s["rows"],)),
        "SumShardRows",
        SumFields(1),
    )
    repeated_rows = Total(
        written.dead | "RepeatedRows" >> beam.Map(lambda d: (d["rows"],)),
        "SumRepeatedRows",
        SumFields(1),
    )
    checked = (
        pipeline
        | "CheckReady" >> beam.Create([None])
        | "Check"
        >> beam.Map(
            commit.check,
            staged_counts.side(),
            written_rows.side(),
            repeated_rows.side(),
            extra_rows.side(),
            out_dir=layout.out_dir,
            max_dead_fraction=commit_args.pop("max_dead_fraction"),
        )
    )
    cleared = Total(
        parts
        | "ClearStaging"
        >> beam.Map(commit.clear_part, side.AsSingleton(checked), staging=layout.staging),
        "ClearedSum",
        sum,
    )
    dead_files = parts | "DeadFiles" >> beam.FlatMap(lambda p: p["dead"])
    return (
        pipeline
        | "Ready" >> beam.Create([None])
        | "Manifest"
        >> beam.Map(
            commit.finalize,
            side.AsList(written.shards),
            side.AsSingleton(checked),
            sketches.side(),
            rank_sketches.side(),
            _side(model),
            _side(fitted),
            cleared.side(),
            staged_counts.side(),
            runtime.side(),
            side.AsList(dead_files),
            side.AsList(written.dead),
            side.AsList(extra_dead),
            out_dir=layout.out_dir,
            staging=layout.staging,
            **commit_args,
        )
    )
