"""The scoring job as a few composite transforms, in the order they run.

``ReadScoreStage`` (read units -> validated batches -> scorers -> staging pieces by shard, one
fused stage: record text crosses no shuffle) -> ``FitClusters`` (k-means on a sample taken
while scoring) -> ``BuildShards`` (pieces grouped by shard; repeated ids dead-lettered;
value and rank sketches of what will be written; each shard written once) -> ``WriteDeadLetters``
(per stage) -> ``Commit`` (accounting check, then the manifest, written last).
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from pipelines.io.row_schema import MetaSchemaCombineFn
from pipelines.job import commit, steps
from pipelines.job import write as shard_build
from pipelines.job.stage import StageFn
from pipelines.model import clustering, proxy
from pipelines.model.inference import ScorerModelHandler
from pipelines.stats import ranks


@dataclass
class Layout:
    """What the transforms share: the signal columns and how difficulty is made of them."""

    out_dir: str
    columns: list[str]  # every signal column, centroid_distance included when clustering
    directions: dict[str, int]
    weights: dict[str, float]
    n_shards: int
    n_buckets: int
    embedding_dim: int | None
    sketch_error: float
    rank_error: float = 0.001
    proxy_target: str | None = None  # the expensive signal a learned proxy stands in for
    proxy_features: tuple[str, ...] = ()

    @property
    def scored_columns(self) -> list[str]:
        """The columns the scorers produce (centroid distance comes after k-means, the proxy
        after its fit: both are computed per shard)."""
        later = {"centroid_distance", f"{self.proxy_target}_proxy"}
        return [c for c in self.columns if c not in later]


class ReadScoreStage(beam.PTransform):
    """Read units -> ``{"staged", "count", "dead_read", "dead_score", "meta_types"}`` and,
    with ``sample_threshold``, the k-means sample ``"sample"``."""

    def __init__(
        self,
        layout: Layout,
        *,
        read_fn: steps.ReadFn,
        handler: ScorerModelHandler,
        spread_batches: bool,
        sample_threshold: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.layout, self.read_fn, self.handler = layout, read_fn, handler
        self.spread_batches, self.sample_threshold, self.seed = (
            spread_batches,
            sample_threshold,
            seed,
        )

    def expand(self, units):
        parsed = (
            units
            | "SpreadUnits" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(self.read_fn).with_outputs("dead", "count", main="ok")
        )
        batches = parsed.ok
        if self.spread_batches:
            # A unit that cannot be split (a compressed file, a Hub stream) would keep one
            # worker busy alone: spread its batches. Small units are scored where read.
            batches = batches | "SpreadBatches" >> beam.Reshuffle()
        scored = (
            batches
            | "Score" >> RunInference(self.handler)
            | "SplitScored" >> beam.FlatMap(steps.split_scored).with_outputs("dead", main="ok")
        )
        rows = scored.ok
        out = {
            "staged": rows
            | "Stage"
            >> beam.ParDo(
                StageFn(self.layout.out_dir, self.layout.scored_columns, self.layout.n_shards)
            ),
            "meta_types": rows | "MetaTypes" >> beam.CombineGlobally(MetaSchemaCombineFn()),
            "count": parsed.count,
            "dead_read": parsed.dead,
            "dead_score": scored.dead,
        }
        if self.sample_threshold is not None:
            out["sample"] = rows | "SampleForKMeans" >> beam.FlatMap(
                clustering.sample_rows, self.seed, self.sample_threshold
            )
        if self.layout.proxy_target:
            out["proxy_sample"] = rows | "SampleForProxy" >> beam.FlatMap(
                proxy.sample_rows,
                self.layout.proxy_target,
                list(self.layout.proxy_features),
                self.seed,
            )
        return out


class FitClusters(beam.PTransform):
    """The k-means sample -> ``{"centroids", "info"}`` (one element)."""

    def __init__(self, k: int, seed: int, sample_size: int) -> None:
        super().__init__()
        self.k, self.seed, self.sample_size = k, seed, sample_size

    def expand(self, sample):
        return (
            sample
            | "CollectSample" >> beam.combiners.ToList()
            | "KMeans" >> beam.Map(steps.fit, self.k, self.seed, self.sample_size)
        )


class _LevelCounts(beam.DoFn):
    """One shard's signal columns -> the next rank level's sparse counts, per column."""

    def __init__(self, columns: list[str], eps: float) -> None:
        self.columns, self.eps = list(columns), eps

    def process(self, element: dict, sketches: dict | None = None):
        cols = element["columns"]
        yield {
            c: (sketches[c] if sketches else ranks.RankSketch(self.eps)).level_counts(cols[c])
            for c in self.columns
        }


class _SumCounts(beam.CombineFn):
    """Sum the sparse counts of every part, per column (addition: order-free)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)

    def create_accumulator(self):
        return {c: [] for c in self.columns}

    def add_input(self, acc, counts):
        for c in self.columns:
            acc[c] = [ranks.merge_counts([*acc[c], counts[c]])]
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for acc in accs:
            for c in self.columns:
                out[c] = [ranks.merge_counts([*out[c], *acc[c]])]
        return out

    def extract_output(self, acc):
        return {c: ranks.merge_counts(acc[c]) for c in self.columns}


def _add_level(counts: dict, sketches: dict | None, eps: float) -> dict:
    return {
        c: (sketches[c] if sketches else ranks.RankSketch(eps)).add_level(counts[c]) for c in counts
    }


class RankSketches(beam.PTransform):
    """Per-shard signal columns -> ``{column: RankSketch}`` refined until every bucket is
    small enough (at most ``len(ranks.LEVEL_BITS)`` passes over the columns)."""

    def __init__(self, columns: list[str], eps: float) -> None:
        super().__init__()
        self.columns, self.eps = list(columns), eps

    def expand(self, parts):
        sketches = None
        for level in range(len(ranks.LEVEL_BITS)):
            prev = beam.pvalue.AsSingleton(sketches) if sketches is not None else None
            counts = (
                parts
                | f"Count{level}" >> beam.ParDo(_LevelCounts(self.columns, self.eps), prev)
                | f"Sum{level}" >> beam.CombineGlobally(_SumCounts(self.columns))
            )
            sketches = counts | f"Level{level}" >> beam.Map(_add_level, prev, self.eps)
        return sketches


class FitProxy(beam.PTransform):
    """The proxy sample -> ``{"model", "info"}`` (one element)."""

    def __init__(
        self, target: str, features: list[str], seed: int, tokens: str | None, job_token: str = ""
    ) -> None:
        super().__init__()
        self.target, self.features, self.seed = target, list(features), seed
        self.tokens = tokens  # the LM whose tokenizer gives token features, or None
        self.job_token = job_token  # a copy of a model in a bucket is made once per job

    def expand(self, sample):
        count = sample | "CountSample" >> beam.combiners.Count.Globally()
        return (
            sample
            | "CapSample" >> beam.combiners.Top.Smallest(proxy.MAX_FIT_ROWS, key=proxy.sample_order)
            | "Fit"
            >> beam.Map(
                proxy.fit_job_sample,
                self.target,
                self.features,
                self.seed,
                self.tokens,
                self.job_token,
                sampled=beam.pvalue.AsSingleton(count),
            )
        )


class BuildShards(beam.PTransform):
    """Staging descriptors -> ``{"shards", "dead_write", "sketches", "ranks"}``: the value
    sketches give the manifest's statistics, the rank sketches the difficulty ranks; both
    count each written record once (repeated ids are dropped before)."""

    def __init__(
        self, layout: Layout, meta_types, model=None, proxy_model=None, progress_dir=None
    ) -> None:
        super().__init__()
        self.layout, self.meta_types, self.model = layout, meta_types, model
        self.proxy_model, self.progress_dir = proxy_model, progress_dir

    def expand(self, staged):
        layout = self.layout
        model = beam.pvalue.AsSingleton(self.model) if self.model is not None else None
        fitted = self.proxy_model
        proxy_side = beam.pvalue.AsSingleton(fitted) if fitted is not None else None
        grouped = (
            staged
            | "KeyByShard" >> beam.Map(lambda d: (d["shard"], d))
            | "GroupByShard" >> beam.GroupByKey()
        )
        prepared = grouped | "Prepare" >> beam.ParDo(
            shard_build.PrepareShardFn(layout.columns, self.progress_dir),
            model=model,
            proxy=proxy_side,
        ).with_outputs("dead", main="columns")
        sketches = prepared.columns | "Sketch" >> beam.CombineGlobally(
            steps.SketchCombineFn(layout.columns, layout.sketch_error)
        )
        rank_sketches = prepared.columns | "Ranks" >> RankSketches(
            list(layout.weights), layout.rank_error
        )
        shards = grouped | "Write" >> beam.ParDo(
            shard_build.WriteShardFn(
                layout.out_dir,
                layout.columns,
                directions=layout.directions,
                weights=layout.weights,
                n_buckets=layout.n_buckets,
                embedding_dim=layout.embedding_dim,
            ),
            beam.pvalue.AsSingleton(rank_sketches),
            beam.pvalue.AsSingleton(self.meta_types),
            model=model,
            proxy=proxy_side,
        )
        return {
            "shards": shards,
            "dead_write": prepared.dead,
            "sketches": sketches,
            "ranks": rank_sketches,
        }


class WriteDeadLetters(beam.PTransform):
    """One stage's dead letters -> a few ``dead_letter/STAGE-NNNNN.jsonl`` files; yields
    ``{"path", "rows"}`` per file. Each stage is written on its own: no Flatten of
    PCollections made in different stages (the multi-process DirectRunner lost elements of
    such a Flatten at 1e6 records in our benchmark)."""

    def __init__(self, out_dir: str, stage: str) -> None:
        super().__init__()
        self.out_dir, self.stage = out_dir, stage

    def expand(self, dead):
        return (
            dead
            | "KeyDead" >> beam.Map(commit.dead_letter_key)
            | "GroupDead" >> beam.GroupByKey()
            | "WriteDead" >> beam.Map(commit.write_dead_letters, self.out_dir, self.stage)
        )


class Commit(beam.PTransform):
    """Once everything else is done: the accounting check, then the manifest."""

    def __init__(
        self, *, shards, dead_infos, count, sketches, ranks, model, proxy_model, **fixed
    ) -> None:
        super().__init__()
        self.shards, self.dead_infos, self.count = shards, dead_infos, count
        self.sketches, self.ranks, self.model, self.fixed = sketches, ranks, model, fixed
        self.proxy_model = proxy_model

    def expand(self, pbegin):
        side = beam.pvalue
        n_input = self.count | "CountInput" >> beam.CombineGlobally(sum)
        dead = [side.AsList(d) for d in self.dead_infos]
        return (
            pbegin
            | "Ready" >> beam.Create([None])
            | "Manifest"
            >> beam.Map(
                commit.finalize,
                side.AsList(self.shards),
                side.AsSingleton(n_input),
                side.AsSingleton(self.sketches),
                side.AsSingleton(self.ranks),
                side.AsSingleton(self.model) if self.model is not None else None,
                side.AsSingleton(self.proxy_model) if self.proxy_model is not None else None,
                *dead,
                **self.fixed,
            )
        )
