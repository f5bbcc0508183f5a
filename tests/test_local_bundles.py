"""pipelines.job.local_bundles: the local runner cuts a large stage input into waves of
bounded bundles, and nothing it computes changes."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipelines.job import local_bundles as L

THREADS = ["--direct_running_mode=multi_threading", "--direct_num_workers=2"]


def test_waves_bound_the_bytes_of_each_bundle():
    assert L.waves(0, 2, 16) == 1
    assert L.waves(32, 2, 16) == 1  # one bundle per worker, each at the bound
    assert L.waves(33, 2, 16) == 2
    assert L.waves(1_000, 4, 100) == 3
    assert L.waves(10**9, 2, 16) == L.MAX_WAVES  # the combines' partial accumulators stay bounded
    assert L.waves(10**9, 2, 16, combines=False) == 31_250_000  # no combine: bundles stay small


def test_a_stage_combines_when_its_descriptor_holds_a_precombine():
    class T:
        def __init__(self, urn):
            self.spec = type("Spec", (), {"urn": urn})()

    class D:
        def __init__(self, *urns):
            self.transforms = {str(i): T(u) for i, u in enumerate(urns)}

    assert L.combines(D("beam:transform:pardo:v1", "beam:transform:combine_per_key_precombine:v1"))
    assert not L.combines(D("beam:transform:pardo:v1", "beam:transform:flatten:v1"))
    assert L.combines(None)  # cannot tell: bounded as a combining stage


def test_input_bytes_of_a_list_and_of_a_grouped_buffer():
    class Grouped:
        _table = {b"a": [b"x" * 1000], b"b": [b"y" * 1000], b"c": [b"z" * 1000]}

    assert L.input_bytes([b"abc", b"de"]) == 5  # a list buffer iterates its encoded chunks
    assert 3000 <= L.input_bytes(Grouped()) <= 3300  # sampled groups x groups
    one = Grouped()
    one._table = {b"a": [b"x" * 10_000]}
    assert L.input_bytes(one) == 0  # a single group is never cut


class _CountBundles(beam.DoFn):
    def __init__(self) -> None:
        self.bundles = Metrics.counter("test", "bundles")

    def start_bundle(self) -> None:
        self.bundles.inc()

    def process(self, element):
        yield element


def _run(max_bytes: int, monkeypatch, total: bool = False) -> int:
    monkeypatch.setattr(L.BoundedBundleManager, "max_bytes", max_bytes)
    values = [f"value {i} " + "x" * (i % 97) for i in range(600)]
    p = beam.Pipeline(runner=L.runner_class()(), options=PipelineOptions(THREADS))
    counted = p | beam.Create(values) | "Spread" >> beam.Reshuffle() | beam.ParDo(_CountBundles())
    if total:  # a global combine's partial step in the counted stage
        lengths = counted | beam.Map(len) | beam.CombineGlobally(sum)
        assert_that(lengths, equal_to([sum(map(len, values))]), label="Total")
    out = (
        counted
        | beam.Map(lambda v: (len(v) % 7, v))
        | beam.GroupByKey()
        | beam.MapTuple(lambda k, vs: (k, sorted(vs)))
    )
    expected = {}
    for v in values:
        expected.setdefault(len(v) % 7, []).append(v)
    assert_that(out, equal_to([(k, sorted(vs)) for k, vs in expected.items()]))
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query()["counters"]
    return sum(c.committed for c in counters if c.key.metric.name == "bundles")


def test_a_large_input_runs_as_waves_with_the_same_result(monkeypatch):
    monkeypatch.delenv("GRADUM_BOUNDED_BUNDLES", raising=False)
    assert L.runner_class() is L.BoundedBundleRunner  # this Beam has what it relies on
    monkeypatch.setenv("GRADUM_BOUNDED_BUNDLES", "0")
    assert L.runner_class() is beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner
    monkeypatch.delenv("GRADUM_BOUNDED_BUNDLES")
    assert _run(L.MAX_BUNDLE_BYTES, monkeypatch) == 2  # small input: one bundle per worker
    assert _run(2_000, monkeypatch) > 2 * L.MAX_WAVES  # ~50 KB in bundles of ~2 KB, metrics summed
    # a stage that sends partial accumulators to a global combine runs at most MAX_WAVES waves
    assert 2 < _run(2_000, monkeypatch, total=True) <= 2 * L.MAX_WAVES


def test_the_job_writes_the_same_bytes_whatever_the_bundles(tmp_path, monkeypatch):
    from pipelines.score import main

    def shards(out, max_bytes):
        monkeypatch.setattr(L.BoundedBundleManager, "max_bytes", max_bytes)
        args = ["builtin:graded?n=900", "--output", str(out), "--no-progress"]
        more = ["--rows-per-shard", "150", "--signals", "length,readability", *THREADS]
        assert main([*args, *more]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        return manifest["counts"], [(s["path"], s["sha256"]) for s in manifest["shards"]]

    rounds = []
    real = L.waves
    monkeypatch.setattr(L, "waves", lambda *a: rounds.append(real(*a)) or rounds[-1])
    whole = shards(tmp_path / "whole", L.MAX_BUNDLE_BYTES)
    assert max(rounds) == 1
    rounds.clear()
    cut = shards(tmp_path / "cut", 512)  # the finishing stages as several waves
    assert max(rounds) > 5
    assert cut == whole
    assert whole[0]["written"] == 900 and len(whole[1]) == 6


def test_spread_deals_every_piece_once_and_evenly():
    pieces = [bytes([i]) * (1 + (i * 37) % 50) for i in range(40)]
    out = L.spread(pieces, 6)
    assert sorted(p for bundle in out for p in bundle) == sorted(pieces)
    loads = [sum(map(len, b)) for b in out]
    assert max(loads) - min(loads) <= max(map(len, pieces))
    assert L.spread([], 3) == [[], [], []]


def test_chunks_of_a_buffer_already_cut_are_all_of_its_pieces():
    """A GroupByKey's buffer caches its first cut whatever n a later reader asks for; every
    piece of that cut is read, none left behind, and the stock path is not taken for it."""

    class Cut:
        _table: dict = {}
        _grouped_output = [[b"a"], [b"b", b"c"], [b"d"], [b"e"], [b"f"]]

        def partition(self, n):
            return self._grouped_output

    assert L.chunks(Cut(), 4) == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert L._cut_otherwise(Cut(), 2)
    assert not L._cut_otherwise(Cut(), 5)
    assert not L._cut_otherwise([b"x"], 2)  # a list buffer not cut yet
    assert L.chunks([b"x", b"yz"], 4) == [b"x", b"yz"]  # a list buffer: its own chunks
