"""The job's graph stays bounded at any scale: no step gathers a number of elements that grows
with the records onto one worker, and the graph itself stays small for 100,000 input files.

These read the graph the launcher builds (nothing runs): a ``ToList``, a ``GroupByKey`` on
one key outside a combiner, an unbounded combiner or an ``AsList`` side input of per-record
data coming back into the job fails them."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.pipeline import PipelineVisitor

from pipelines.config import JobConfig
from pipelines.job.launch import build_pipeline, claim_output, plan_job

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

# Combiners whose accumulators are bounded by constants (k rows, ranks.budget(eps) sparse
# counts a pass and signal, one sketch per signal, field kinds) or are numbers.
BOUNDED_COMBINE_FNS = {
    "BottomKCombineFn",
    "GuideCombineFn",
    "_SumCounts",
    "SketchCombineFn",
    "MetaSchemaCombineFn",
    "SumFields",
    "RuntimeCombineFn",  # one entry per (scorer, backend/device) pair
}
BOUNDED_CALLABLES = (sum,)
# GroupByKeys that are keyed by many keys (random, per id bucket) or lifted combiners.
KEYED_GROUPS = ("SpreadFiles/", "SpreadUnits/", "RepeatedIds/GroupByIdBucket")
# The only steps that may take whole PCollections as lists: the manifest (one entry per shard
# and per dead-letter file: it lists them by design).
LIST_CONSUMERS = ("FinishShards/Manifest", "Manifest")


class _Collect(PipelineVisitor):
    def __init__(self) -> None:
        self.nodes = []

    def enter_composite_transform(self, node) -> None:
        self.nodes.append(node)

    def visit_transform(self, node) -> None:
        self.nodes.append(node)


def graph_nodes(pipeline) -> list:
    visitor = _Collect()
    pipeline.visit(visitor)
    return [n for n in visitor.nodes if n.full_label]


def _job(tmp_path, **kw) -> JobConfig:
    base = dict(
        inputs=["builtin:graded?n=200"],
        output=str(tmp_path / "out"),
        signals=["length", "readability"],
        progress=False,
    )
    base.update(kw)
    return JobConfig(**base)


def _built(cfg: JobConfig):
    prepared = plan_job(cfg, IN_MEMORY)
    marker, resumed = claim_output(prepared)
    return build_pipeline(prepared, marker, resumed)


def unbounded_steps(pipeline) -> list[str]:
    """Every step of ``pipeline`` that could gather per-record data on one worker."""
    bad = []
    combine_labels = []
    for node in graph_nodes(pipeline):
        t, label = node.transform, node.full_label
        name = type(t).__name__
        if "ToList" in name or name in ("ToDict", "ToSet"):
            bad.append(f"{label}: {name}")
        fn = getattr(t, "fn", None)
        if isinstance(t, beam.CombinePerKey | beam.CombineGlobally):
            combine_labels.append(label + "/")
            inner = getattr(fn, "_fn", fn)  # a callable wrapped as a CombineFn
            if type(fn).__name__ not in BOUNDED_COMBINE_FNS and inner not in BOUNDED_CALLABLES:
                bad.append(f"{label}: combiner {type(fn).__name__} is not known to be bounded")
    for node in graph_nodes(pipeline):
        label = node.full_label
        in_combine = any(label.startswith(c) for c in combine_labels)  # its one-element result
        for side in getattr(node, "side_inputs", ()):
            kind = type(side).__name__
            if kind in ("AsList", "AsIter") and not (
                label.startswith(LIST_CONSUMERS) or in_combine
            ):
                bad.append(f"{label}: {kind} side input")
    for node in graph_nodes(pipeline):
        t, label = node.transform, node.full_label
        if isinstance(t, beam.GroupByKey):
            lifted = any(label.startswith(c) for c in combine_labels)
            keyed = any(k in label for k in KEYED_GROUPS)
            if not (lifted or keyed):
                bad.append(f"{label}: GroupByKey outside a combiner or a keyed spread")
    return bad


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"clusters": 3},
        {"proxy": "readability", "proxy_fraction": 0.5},
        {"id_field": "none"},
    ],
)
def test_no_step_gathers_records_on_one_worker(tmp_path, options):
    pipeline = _built(_job(tmp_path, **options))
    assert unbounded_steps(pipeline) == []


def test_the_check_sees_a_gathering_step(tmp_path):
    """The check itself: a ToList, a one-key GroupByKey and an AsList are each caught."""
    pipeline = _built(_job(tmp_path))
    records = pipeline | "Extra" >> beam.Create([1, 2, 3])
    _ = records | "Gather" >> beam.combiners.ToList()
    _ = records | "OneKey" >> beam.Map(lambda x: (0, x)) | "Group" >> beam.GroupByKey()
    _ = (
        pipeline
        | "Side" >> beam.Create([0])
        | beam.Map(lambda _, xs: len(xs), beam.pvalue.AsList(records))
    )
    bad = unbounded_steps(pipeline)
    assert any("Gather" in b for b in bad)
    assert any(b.startswith("Group:") or "/Group:" in b or b.startswith("Group") for b in bad)
    assert any("AsList" in b for b in bad)


def test_the_graph_holds_sources_not_read_units(tmp_path, monkeypatch):
    """100,000 input files: the launcher writes their list as plan objects of 1,000 files and
    the graph names those (100 elements): it stays far under Dataflow's 20 MB request limit
    (under 1 MB here), whatever the number of read units the workers will make."""
    import pipelines.plan.inputs as inputs

    files = [(f"/data/corpus/part-{i:06d}.jsonl", 200_000_000) for i in range(100_000)]
    monkeypatch.setattr(inputs, "_files_of", lambda spec: files)
    monkeypatch.setattr(inputs, "_bytes_per_record", lambda files, pool: 500.0)
    cfg = _job(tmp_path, inputs=["/data/corpus/*.jsonl"])
    pipeline = _built(cfg)
    size = len(pipeline.to_runner_api().SerializeToString())
    assert size < 1_000_000, size
    staged = tmp_path / "out" / "staging"
    plan_objects = list(staged.glob("*/plan/files-*.json"))
    assert len(plan_objects) == 100


def test_the_finishing_steps_tune_the_heap_and_scoring_does_not(tmp_path):
    """Each of gradum's DoFns after scoring (kept columns, rank passes, shard writing) is a
    WorkerFn, whose setup fixes glibc's heap limits in the worker (shards.heap.tune_heap); the
    reading, scoring and staging DoFns are not (the fixed limits slow torch down)."""
    from pipelines.job.worker_fn import WorkerFn

    pipeline = _built(_job(tmp_path, clusters=3))
    ours = []
    for node in graph_nodes(pipeline):
        fn = getattr(node.transform, "fn", None)
        if isinstance(fn, beam.DoFn) and type(fn).__module__.startswith("pipelines."):
            ours.append((node.full_label, fn))
    tuned = {type(fn).__name__ for _, fn in ours if isinstance(fn, WorkerFn)}
    untuned = {type(fn).__name__ for _, fn in ours if not isinstance(fn, WorkerFn)}
    assert tuned == {"KeptColumns", "_LevelCounts", "WriteShard"}
    assert untuned == {"ReadPart", "ScoreSignals", "StagePart"}  # nothing after scoring


def test_the_staging_step_knows_whether_a_model_runs_before_it(tmp_path):
    """CPU signals only: the staging step may fix glibc's mmap threshold (no torch to slow
    down); with the embedding model in the stage (k-means) it must not."""
    from pipelines.job.stage import StagePart

    for kw, models in (({}, False), ({"clusters": 3}, True)):
        pipeline = _built(_job(tmp_path / str(models), **kw))
        fns = [getattr(n.transform, "fn", None) for n in graph_nodes(pipeline)]
        (stage,) = [fn for fn in fns if isinstance(fn, StagePart)]
        assert stage.models is models


def test_the_rank_passes_read_references_and_the_columns_stay_in_their_bundle(tmp_path):
    """Rank passes 0 and 1 take KeptColumns' main output (a reference per part to its kept
    object); the columns themselves (tag ``columns``) feed only the value sketches' partial
    step, fused into KeptColumns' bundle. If a pass read the columns tag, every signal value
    would cross the runner again (48 bytes per record)."""
    pipeline = _built(_job(tmp_path, clusters=3))
    readers: dict[str | None, set[str]] = {}
    for node in graph_nodes(pipeline):
        for pcoll in node.inputs:
            if "/KeptColumns/" in getattr(pcoll.producer, "full_label", ""):
                readers.setdefault(pcoll.tag, set()).add(node.full_label)  # None: main
    passes = {label.split("/")[2] for label in readers[None] if "RankSketches" in label}
    assert passes == {"Count0", "Count1"}
    assert readers["columns"] and all("/ValueSketches" in r for r in readers["columns"])


class _Acc(list):
    """A list accumulator that can be weak-referenced."""


class _DictAcc(dict):
    """A dict accumulator that can be weak-referenced."""


def _peak_alive(fn, accs: list) -> int:
    """The most accumulators alive at once while ``fn`` merges a one-pass stream of them (a
    runner that streams a group's values, as Dataflow does, hands them over like this)."""
    import weakref

    refs, peak = [], 0

    def stream():
        nonlocal peak
        while accs:
            acc = accs.pop(0)
            refs.append(weakref.ref(acc))  # freed by reference counting once dropped
            peak = max(peak, sum(r() is not None for r in refs))
            yield acc
            del acc

    fn.merge_accumulators(stream())
    return peak


def test_every_bounded_combiner_merges_one_accumulator_at_a_time():
    """The merging worker holds a bounded number of accumulators whatever the workers: 20
    accumulators merged, at most 3 alive (the result, the one before, the one coming)."""
    import numpy as np

    from pipelines.io.row_schema import MetaSchemaCombineFn
    from pipelines.job.rank_guide import GuideCombineFn, part_offer
    from pipelines.job.samples import BottomKCombineFn
    from pipelines.job.signal_stats import SketchCombineFn, _SumCounts
    from pipelines.job.totals import RuntimeCombineFn, SumFields

    cols = ["a", "b"]
    rng = np.random.default_rng(0)

    def sketch_acc():
        fn = SketchCombineFn(cols, 0.01)
        acc = fn.add_input(fn.create_accumulator(), {"columns": {c: rng.random(50) for c in cols}})
        return _DictAcc(acc)

    def counts_acc():
        from pipelines.stats import ranks

        sketch = ranks.RankSketch(0.01)
        return _DictAcc({c: sketch.level_counts(rng.random(50)) for c in cols})

    cases = [
        (BottomKCombineFn(5), lambda: _Acc((float(x), str(x)) for x in rng.random(5))),
        (SketchCombineFn(cols, 0.01), sketch_acc),
        (_SumCounts(cols), counts_acc),
        (
            GuideCombineFn(8),
            lambda: _DictAcc(part_offer(str(rng.random()), {"a": rng.random(20)}, 8)),
        ),
        (MetaSchemaCombineFn(), lambda: _DictAcc({"f": {"int"}})),
        (RuntimeCombineFn(), lambda: _DictAcc({("lm", ()): 3})),
    ]
    for fn, make in cases:
        assert _peak_alive(fn, [make() for _ in range(20)]) <= 3, type(fn).__name__
    assert SumFields(2).merge_accumulators(iter([(1, 2)] * 20)) == (20, 40)  # numbers: no list
    assert len(BOUNDED_COMBINE_FNS) == len(cases) + 1  # each bounded combiner is checked here


def test_a_graph_built_and_not_run_leaves_no_scratch_folder(tmp_path):
    """Beam makes a scratch folder per pipeline and removes it only in ``run``; a dry run or
    a measured graph must not leave one in the temp dir."""
    import gc
    import os

    pipeline = _built(_job(tmp_path))
    scratch = pipeline.local_tempdir
    assert os.path.isdir(scratch)
    del pipeline
    gc.collect()
    assert not os.path.exists(scratch)
