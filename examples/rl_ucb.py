"""An RL-style loop in the DUMP setting: a UCB bandit over data groups, fed with advantages.

DUMP (Wang et al. 2025, "DUMP: Automated Distribution-Level Curriculum Learning for RL-based
LLM Post-training", arXiv 2504.09710) treats each data distribution as a bandit arm and scores it
by the expected *absolute advantage* of its recent rollouts: a group whose prompts are always
solved (or never solved) yields zero advantage and so no policy-gradient signal, while a group
on the edge of the policy's ability yields large advantages. ``UCB(group="level",
reward="abs_advantage")`` implements that score (window mean of |advantage| plus a UCB
exploration bonus, softmax with temperature tau).

The loop, per step:

1. the sampler draws a batch of prompts (``"a + b ="`` from the builtin graded arithmetic corpus;
   the groups are the five ``level`` values, operands of 1..5 digits);
2. the policy answers each prompt ``--samples`` times; reward 1 for the right sum, else 0;
3. group-relative advantages as in GRPO (reward minus the mean reward of the same prompt's
   samples; no division by the std, as in Dr. GRPO, so |advantage| peaks at a 50 % solve rate);
4. a REINFORCE step on the policy with those advantages;
5. feedback: ``sampler.update(ids, advantage=adv)``, one value per rollout (ids repeated).

What is simulated: the "policy" is not a language model but a one-parameter item-response
(Rasch) model: a single skill logit ``s`` shared by all levels, and a prompt of level L is
answered correctly with probability sigmoid(s - OFFSET[L]) (harder levels have larger offsets);
a wrong answer is a number near the sum, and the reward really compares the answer string with
the record's ``answer``. The REINFORCE step is the exact policy gradient of that Bernoulli
policy, so only rollouts that disagree (non-zero advantage) move ``s``, and a level whose solve
rate is near 50 % moves it most. As ``s`` grows the learnable frontier moves from level 1 to
level 5: each level is first too hard (no signal), then learnable, then solved (no signal
again). Expect the group probabilities to follow the frontier (level 1 loses its mass once it is
solved); ``--strategy uniform`` runs the same loop without the bandit for comparison (it wastes
rollouts on solved and hopeless levels, so ``s`` grows more slowly).

Run: ``.venv/bin/python examples/rl_ucb.py`` (a few seconds on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch

from pipelines.corpora.graded import graded_records
from sampler import Sampler
from sampler.strategies import UCB, Uniform

LEVELS = 5
OFFSET = np.array([-1.0, 1.0, 3.0, 5.0, 7.0])  # at s = 0: P(correct) 73 %, 27 %, 5 %, 0.7 %, 0.1 %


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class SkillPolicy:
    """The toy policy: one skill logit; level L is solved with probability sigmoid(s - OFFSET)."""

    def __init__(self, rng: np.random.Generator, lr: float) -> None:
        self.skill = 0.0
        self.rng = rng
        self.lr = lr

    def solve_rate(self) -> np.ndarray:
        return sigmoid(self.skill - OFFSET)

    def answer(self, recs: list[dict[str, Any]], k: int) -> list[list[str]]:
        """``k`` sampled answers per prompt (the explicit generator, never the global RNG)."""
        rate = self.solve_rate()
        out = []
        for r in recs:
            right = self.rng.random(k) < rate[r["level"] - 1]
            wrong = int(r["answer"]) + self.rng.choice([-10, -2, -1, 1, 2, 10], size=k)
            out.append([r["answer"] if ok else str(w) for ok, w in zip(right, wrong, strict=True)])
        return out

    def reinforce(self, levels: np.ndarray, correct: np.ndarray, adv: np.ndarray) -> None:
        """s += lr * mean over rollouts of adv * d log pi(rollout) / ds, where
        d log pi / ds = correct - sigmoid(s - OFFSET[level]) for this Bernoulli policy."""
        grad = adv * (correct - self.solve_rate()[levels - 1])
        self.skill += self.lr * float(grad.mean())


def init_distributed() -> None:
    """Under ``torchrun`` (WORLD_SIZE > 1), join the process group *before* building the
    Sampler: it reads its rank and world size when it is built (and checks them at every draw),
    so each rank serves its own slice of the global batch."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per step")
    ap.add_argument("--samples", type=int, default=8, help="rollouts per prompt")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--strategy", choices=["ucb", "uniform"], default="ucb")
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    recs = list(graded_records(args.records, seed=args.seed, task="arithmetic", levels=LEVELS))
    level = np.array([r["level"] for r in recs], dtype=np.int64)
    if args.strategy == "ucb":
        # DUMP's c = 1 and tau = 0.1; a window of 256 rollouts per group so it adapts in time
        strategy: Any = UCB(group="level", reward="abs_advantage", window=256)
    else:
        strategy = Uniform()
    init_distributed()  # the process group first, then the Sampler
    sampler = Sampler(
        {"level": level}, strategy, batch_size=args.batch_size, seed=args.seed, device="cpu"
    )
    policy = SkillPolicy(np.random.default_rng(args.seed), args.lr)

    k = args.samples
    prob_history: list[list[float]] = []
    solve_history: list[list[float]] = []
    served = np.zeros(LEVELS, dtype=np.int64)
    print("step  solve rate per level (L1..L5)       group probability (L1..L5)")
    for step, batch in zip(range(args.steps), sampler, strict=False):
        ids = batch.indices.numpy()
        batch_recs = [recs[i] for i in ids]
        answers = policy.answer(batch_recs, k)
        reward = np.array(
            [
                [float(a == r["answer"]) for a in row]
                for row, r in zip(answers, batch_recs, strict=True)
            ]
        )  # [B, k]
        adv = reward - reward.mean(1, keepdims=True)  # GRPO: relative to the prompt's samples
        lv = np.repeat(level[ids], k)
        policy.reinforce(lv, reward.reshape(-1), adv.reshape(-1))
        sampler.update(batch.indices.repeat_interleave(k), advantage=torch.from_numpy(adv).view(-1))
        np.add.at(served, level[ids] - 1, 1)

        st = sampler.stats()
        probs = (
            st["group_probabilities"].tolist()
            if "group_probabilities" in st
            else [float(np.mean(level == lv_)) for lv_ in range(1, LEVELS + 1)]
        )
        prob_history.append(probs)
        solve_history.append(policy.solve_rate().tolist())
        if step % args.log_every == 0 or step == args.steps - 1:
            solve = " ".join(f"{x:5.2f}" for x in policy.solve_rate())
            pr = " ".join(f"{x:5.2f}" for x in probs)
            print(f"{step:4d}  {solve}     {pr}")

    final = policy.solve_rate()
    print(
        f"served prompts per level: {served.tolist()}  mean solve rate {final.mean():.3f}  "
        f"[{time.perf_counter() - t0:.1f} s]"
    )
    return {
        "probability_history": prob_history,
        "solve_rate_history": solve_history,
        "final_solve_rate": final.tolist(),
        "served_per_level": served.tolist(),
        "stats": sampler.stats(),
    }


if __name__ == "__main__":
    main()
