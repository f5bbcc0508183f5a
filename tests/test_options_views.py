"""pipelines.job.options_views: Beam's options with one view per class, the same values."""

from __future__ import annotations

import pickle

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    TypeOptions,
)

from pipelines.job.options_views import CachedViews
from pipelines.job.runner import beam_options


def test_each_class_is_viewed_once(monkeypatch):
    options = CachedViews(["--runner=DirectRunner"])
    built = []
    real = PipelineOptions.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        real(self, *args, **kwargs)

    monkeypatch.setattr(PipelineOptions, "__init__", counting)
    views = [options.view_as(TypeOptions) for _ in range(50)]
    assert all(v is views[0] for v in views)
    assert built == ["TypeOptions"]  # Beam's own view_as builds one per call: 50


def test_a_kept_view_sees_later_changes_and_values_match_beams():
    flags = ["--runner=DirectRunner", "--direct_num_workers=3", "--no_pipeline_type_check"]
    cached, plain = CachedViews(flags), PipelineOptions(flags)
    direct = cached.view_as(DirectOptions)
    cached.view_as(DirectOptions).direct_num_workers = 5
    assert direct.direct_num_workers == 5
    assert cached.view_as(TypeOptions).pipeline_type_check is False
    assert plain.view_as(TypeOptions).pipeline_type_check is False
    assert cached.view_as(StandardOptions).runner == plain.view_as(StandardOptions).runner
    plain.view_as(DirectOptions).direct_num_workers = 5
    assert cached.get_all_options() == plain.get_all_options()


def test_pickled_options_keep_their_values_not_their_views():
    options = beam_options(["--direct_num_workers=2"])
    assert isinstance(options, CachedViews)  # what gradum's launcher builds
    options.view_as(TypeOptions)
    state = options.__getstate__()
    assert "_gradum_views" not in state
    back = pickle.loads(pickle.dumps(options))
    assert back.view_as(DirectOptions).direct_num_workers == 2
    assert back.view_as(DirectOptions) is back.view_as(DirectOptions)
