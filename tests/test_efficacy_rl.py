"""benchmarks/efficacy_rl.py: the GRPO pieces (rewards, advantages, log-probabilities), the angle
concentration under the policy (through scorers.lm's own scorer), and the protocol end to end
on a tiny budget."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import efficacy_rl as E  # noqa: E402
from benchmarks import efficacy_rl_task as R  # noqa: E402
from benchmarks.efficacy_model import TinyGPT  # noqa: E402
from benchmarks.efficacy_rl_angle import PolicyScorer, policy_angles  # noqa: E402


def test_tokens_rewards_and_answer_mask():
    assert R.prompt_tokens("12 + 7 =") == [2, 1, R.PLUS, 7, R.EQ]
    assert R.answer_tokens("19") == [9, 1, R.END]
    out = torch.tensor([[9, 1, R.END, 5], [9, 1, 3, R.END], [9, R.END, R.END, 0]])
    assert R.exact_match(out, [[9, 1, R.END]] * 3).tolist() == [1.0, 0.0, 0.0]
    assert R.answer_mask(out).tolist() == [
        [True, True, True, False],
        [True, True, True, True],
        [True, True, False, False],
    ]


def test_grpo_advantages_are_group_standardised_and_zero_when_a_group_agrees():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    a = R.grpo_advantages(r)
    assert a[1:].abs().sum() == 0
    assert a[0].sum().abs() < 1e-6 and a[0].std(unbiased=False) == pytest.approx(1.0, abs=1e-4)
    assert float(a[0, 0]) == pytest.approx(math.sqrt(3), abs=1e-4)


def test_sequence_logp_is_the_mean_log_probability_of_the_answer_up_to_the_end():
    torch.manual_seed(0)
    m = TinyGPT(R.VOCAB, 16, 1, 2, 16)
    p = torch.tensor([[1, R.PLUS, 2, R.EQ]])
    out = torch.tensor([[3, R.END, 7]])
    with torch.no_grad():
        got = R.sequence_logp(m, p, out)
        lp = torch.log_softmax(m(torch.cat([p, out], 1)), -1)[0]
    want = (lp[3, 3] + lp[4, R.END]) / 2  # the token after the end is not counted
    assert float(got) == pytest.approx(float(want), abs=1e-5)


def test_angle_concentration_under_the_policy_is_the_scorers_formula():
    """The adapter runs scorers.lm on the TinyGPT: the angle equals the mean pairwise cosine of
    the last hidden states (after the final LayerNorm), and perplexity exp(mean NLL)."""
    torch.manual_seed(1)
    m = TinyGPT(R.VOCAB, 16, 2, 2, 16).eval()
    prompts = ["3 + 4 =", "12 + 34 =", "987 + 654 ="]
    got = PolicyScorer(m, R.prompt_tokens).score(prompts)
    for i, pr in enumerate(prompts):
        x = torch.tensor([R.prompt_tokens(pr)])
        with torch.no_grad():
            h = m.tok(x) + m.pos(torch.arange(x.shape[1]))
            for blk in m.blocks:
                h = blk(h)
            u = torch.nn.functional.normalize(m.ln(h)[0], dim=-1)
            cos = u @ u.T
            n = cos.shape[0]
            angle = (cos.sum() - n) / (n * (n - 1))
            lp = torch.log_softmax(m(x)[0, :-1], -1).gather(1, x[0, 1:, None]).mean()
        assert got["angle_concentration"][i] == pytest.approx(float(angle), abs=1e-5)
        assert got["perplexity"][i] == pytest.approx(math.exp(-float(lp)), rel=1e-4)
    np.testing.assert_allclose(
        policy_angles(m, prompts, R.prompt_tokens), got["angle_concentration"], rtol=1e-6
    )


def test_rl_protocol_end_to_end_on_a_tiny_budget(tmp_path):
    res = E.main(
        ["--quick", "--seeds", "2", "--work", str(tmp_path), "--png-dir", str(tmp_path),
         "--json", str(tmp_path / "r.json"), "--strategies",
         "uniform,angle,filter-prior,filter-online"]
    )[0]  # fmt: skip
    assert [row["strategy"] for row in res["rows"]] == [
        "uniform", "angle", "filter-prior", "filter-online"
    ]  # fmt: skip
    assert {r["seed"] for r in res["selection"]} == {1000}
    assert {(r["seed"], r["split"]) for r in res["report"]} == {(1, "test"), (2, "test")}
    uni = res["rows"][0]
    assert uni["ratios"] == [1.0, 1.0] and uni["flops_ratios"] == [1.0, 1.0]
    for row in res["rows"]:
        assert 0 <= row["zero_variance_trained"] <= row["zero_variance_rolled"] + 1e-9 <= 1 + 1e-9
        assert len(row["flops_ratios"]) == 2 and not any(math.isnan(x) for x in row["flops_ratios"])
    for r in res["report"]:
        assert len(r["cost"]) == len(r["curve"]) and r["cost"] == sorted(r["cost"])
        assert all(0 <= v <= 1 for _, v in r["curve"])
    # the online filter rolls out twice the prompts, and trains on at most a batch of them
    by = {(r["strategy"], r["seed"]): r for r in res["report"]}
    assert by["filter-online", 1]["rollouts_per_step"] == 2 * by["uniform", 1]["rollouts_per_step"]
    assert (
        by["filter-online", 1]["groups_trained_per_step"]
        <= 4
        == by["uniform", 1]["groups_trained_per_step"]
    )
    assert (tmp_path / "efficacy-rl-arithmetic.png").stat().st_size > 0
    # the saved runs merge back to the same table
    again = E.main(["--replot", f"{tmp_path / 'r.json'}", "--png-dir", ""])[0]
    assert again["rows"] == json.loads(json.dumps(res["rows"]))
