"""The fail-fast rules on their own (pipelines.job.failfast), without a pipeline."""

from __future__ import annotations

import pytest

from pipelines.job import failfast
from pipelines.job.failfast import (
    Budget,
    DeadLetterFractionError,
    ScorerBrokenError,
    wilson_lower,
)


@pytest.fixture(autouse=True)
def fresh_watch(monkeypatch):
    monkeypatch.setattr(failfast, "SCORERS", failfast.ScorerWatch())


def test_wilson_lower_is_below_the_share_and_tightens_with_n():
    assert wilson_lower(0, 100) == 0.0
    assert wilson_lower(30, 100) < 0.3
    assert wilson_lower(300, 1000) > wilson_lower(30, 100)
    assert wilson_lower(3000, 10_000) > 0.28


def test_the_certain_rule_counts_against_the_doubled_estimate():
    budget = Budget()
    budget.configure("job", 0.01, 10_000, exact=False)  # 200 allowed
    budget.add(read=1000, dead=200)
    with pytest.raises(DeadLetterFractionError, match="about 10,000 \\(doubled\\)"):
        budget.add(read=10, dead=1)


def test_the_share_rule_waits_for_min_read_records():
    budget = Budget()
    budget.configure("job", 0.01, 10**9, exact=True)
    budget.add(read=failfast.MIN_READ - 1, dead=500)  # 5 %, but too few read yet
    with pytest.raises(DeadLetterFractionError, match="clearly over"):
        budget.add(read=1, dead=0)


def test_a_budget_blown_by_a_scorer_that_never_worked_names_the_scorer():
    """A broken scorer dead-letters whole batches: the budget may trip before its third
    failed probe, and then the error is the scorer's, not the budget's."""
    failfast.SCORERS.probe_failed("job", "lm", OSError("model.safetensors: no such file"))
    budget = Budget()
    budget.configure("job", 0.01, 20_000, exact=True)
    with pytest.raises(ScorerBrokenError, match="'lm' failed.*model.safetensors"):
        budget.add(read=512, dead=512)


def test_a_scorer_that_has_worked_leaves_the_budget_error_alone():
    failfast.SCORERS.probe_failed("job", "lm", OSError("flaky"))
    failfast.SCORERS.ok("job", "lm")
    failfast.SCORERS.probe_failed("other-job", "lm", OSError("another job's"))
    budget = Budget()
    budget.configure("job", 0.01, 20_000, exact=True)
    with pytest.raises(DeadLetterFractionError):
        budget.add(read=512, dead=512)


def test_three_failed_probes_stop_the_job():
    watch = failfast.SCORERS
    for _ in range(failfast.MAX_PROBE_FAILURES - 1):
        watch.probe_failed("job", "embedding", RuntimeError("CUDA error"))
    with pytest.raises(ScorerBrokenError, match="first 3 batches.*CUDA error"):
        watch.probe_failed("job", "embedding", RuntimeError("CUDA error"))
