"""GRPO on arithmetic prompts with balanced pass-rate filtering (``PassRateFilter``).

Online difficulty filtering (Bae et al. 2025, "Online Difficulty Filtering for Reasoning
Oriented Reinforcement Learning", arXiv 2504.03380): a prompt whose G sampled answers all pass
(pass rate 1) or all fail (pass rate 0) has group-relative advantages of zero and gives the policy
no gradient. ``PassRateFilter`` keeps, in the sampler, the pass rate each prompt had the last time
it was served, from the rewards the trainer feeds back, and draws only prompts that are unseen
or whose recent pass rate is strictly between 0 and 1; a filtered prompt comes back after
``ttl`` steps (the policy moves). The filter learns a prompt's pass rate only by serving it, so
it draws the prompts not served yet with the weight of their level's estimated share of
informative prompts, ((1 + D) / (2 + D + A))^power (D, A: the level's prompts whose first
rollouts disagreed, agreed; ``--power``, default 4), and holds back the unseen prompts of the
solved and hopeless levels too (``--prior none``: every unseen prompt is drawn like a known
informative one). ``--oversample 2`` adds the paper's online filter in the
trainer: the sampler draws twice the batch, every candidate is rolled out, and only the first
B prompts whose rollouts disagree are trained on (more rollouts, fewer wasted gradients).

The loop, per step:
1. the sampler draws B prompts ``"a + b ="`` (the builtin graded arithmetic corpus, operands of
   1 to ``--levels`` digits);
2. the policy (a tiny causal transformer, warm-started by supervised training until it solves
   the easy levels and not yet the hard ones) samples G answers per prompt; reward 1 for the
   exact sum, else 0;
3. GRPO advantages: (reward - group mean) / (group std + 1e-6), zero for a group that agrees;
4. a policy-gradient step on -A log pi(answer) (token mean per answer);
5. feedback: ``sampler.update(ids.repeat_interleave(G), reward=rewards)``: one value per rollout.

It prints the share of zero-variance groups per batch, the prompts the filter holds back and the
mean reward; ``--strategy uniform`` runs the same loop without the filter for comparison.
Run: ``.venv/bin/python examples/rl_filter.py`` (about a minute on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.corpora import load_builtin
from sampler import Sampler
from sampler.strategies import PassRateFilter, Uniform

PLUS, EQ, END, PAD, VOCAB = 10, 11, 12, 13, 14
_WARM: dict[tuple, tuple[int, dict]] = {}  # warm starts made in this process (deterministic)


def encode(prompt: str) -> list[int]:
    """``"a + b ="`` -> digits of a (least significant first), +, digits of b, =."""
    a, b = (s.strip() for s in prompt.rstrip("=").split("+"))
    return [int(c) for c in a[::-1]] + [PLUS] + [int(c) for c in b[::-1]] + [EQ]


def answer(text: str) -> list[int]:
    return [int(c) for c in text[::-1]] + [END]


class Policy(nn.Module):
    """A tiny causal transformer over the 14 tokens (learned positions)."""

    def __init__(self, max_len: int, d: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, 0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, VOCAB))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        h = self.tok(x) + self.pos(torch.arange(t))
        return self.head(self.body(h, mask=mask, is_causal=True))


def generate(
    policy: Policy, prompts: torch.Tensor, n: int, gen: torch.Generator | None
) -> torch.Tensor:
    """``n`` answer tokens per row: sampled at temperature 1 (greedy when ``gen`` is None)."""
    seq = prompts
    for _ in range(n):
        logits = policy(seq)[:, -1]
        if gen is None:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        seq = torch.cat([seq, nxt], 1)
    return seq[:, prompts.shape[1] :]


def rollouts(
    policy: Policy, recs: list[dict], G: int, gen: torch.Generator | None
) -> tuple[list[tuple[list[int], torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Per level (one prompt length): (positions, prompts x G, answers) and rewards [B, G]."""
    rewards = torch.zeros(len(recs), G)
    groups = []
    with torch.no_grad():
        for lv in sorted({r["level"] for r in recs}):
            pos = [i for i, r in enumerate(recs) if r["level"] == lv]
            p = torch.tensor([encode(recs[i]["prompt"]) for i in pos]).repeat_interleave(G, 0)
            out = generate(policy, p, lv + 2, gen)
            want = [answer(recs[i]["answer"]) for i in pos for _ in range(G)]
            hit = [out[k, : len(w)].tolist() == w for k, w in enumerate(want)]
            rewards[pos] = torch.tensor(hit, dtype=torch.float32).view(len(pos), G)
            groups.append((pos, p, out))
    return groups, rewards


def warm_start(policy: Policy, levels: int, held: list[dict], seed: int, max_steps: int) -> int:
    """Supervised answers until greedy accuracy on ``held`` reaches 0.4 (checked every 50)."""
    recs = list(load_builtin(f"builtin:graded?task=arithmetic&n=5000&levels={levels}&seed=2"))
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    length = 3 * levels + 4
    for step in range(max_steps):
        if step % 50 == 0 and step and accuracy(policy, held) >= 0.4:
            return step
        batch = [recs[i] for i in torch.randint(0, len(recs), (64,), generator=gen).tolist()]
        xs, ys = [], []
        for r in batch:
            p, a = encode(r["prompt"]), answer(r["answer"])
            seq = (p + a + [PAD] * length)[: length + 1]
            ys.append([t if len(p) - 1 <= i < len(p) + len(a) - 1 else -100 for i, t in
                       enumerate(seq[1:])])  # fmt: skip
            xs.append(seq[:-1])
        logits = policy(torch.tensor(xs))
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), torch.tensor(ys).view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return max_steps


def accuracy(policy: Policy, recs: list[dict]) -> float:
    _, r = rollouts(policy, recs, 1, None)
    return float(r.mean())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=600, help="prompt pool size")
    ap.add_argument("--batch-size", type=int, default=16, help="prompts trained on per step")
    ap.add_argument("--samples", type=int, default=8, help="rollouts per prompt (G)")
    ap.add_argument("--ttl", type=int, default=50, help="steps a filtered prompt stays out")
    ap.add_argument("--prior", choices=["level", "none"], default="level",
                    help="group prior for unseen prompts (PassRateFilter(group=...))")  # fmt: skip
    ap.add_argument("--power", type=float, default=4.0, help="the prior's exponent")
    ap.add_argument("--oversample", type=int, default=1, help="candidates per trained prompt")
    ap.add_argument("--strategy", choices=["filter", "uniform"], default="filter")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warm-steps", type=int, default=1500)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    lv = args.levels
    spec = f"builtin:graded?task=arithmetic&levels={lv}"
    pool = list(load_builtin(f"{spec}&n={args.prompts}&seed=0"))
    held = list(load_builtin(f"{spec}&n=300&seed=1"))
    torch.manual_seed(args.seed)
    policy = Policy(3 * lv + 4)
    key = (lv, args.seed, args.warm_steps)
    if key not in _WARM:  # the same warm start for every strategy compared in one process
        warm = warm_start(policy, lv, held[:100], args.seed, args.warm_steps)
        _WARM[key] = (warm, {k: v.clone() for k, v in policy.state_dict().items()})
    warm, state = _WARM[key]
    policy.load_state_dict(state)
    start = accuracy(policy, held[100:])
    group = None if args.prior == "none" else args.prior
    strategy: Any = Uniform()
    if args.strategy == "filter":
        strategy = PassRateFilter(ttl=args.ttl, group=group, power=args.power)
    B, G, k = args.batch_size, args.samples, args.oversample
    sampler = Sampler({"level": np.array([r["level"] for r in pool])}, strategy, B * k,
                      seed=args.seed, device="cpu")  # fmt: skip
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    zero_rolled, zero_trained, mean_reward = [], [], []
    print(f"warm start: {warm} supervised steps, greedy accuracy {start:.2f}")
    print("step  zero-variance groups (rolled out / trained)  held back  mean reward")
    for step, batch in zip(range(args.steps), sampler, strict=False):
        ids = batch.indices
        groups, rewards = rollouts(policy, [pool[i] for i in ids.tolist()], G, gen)
        std = rewards.std(1, unbiased=False, keepdim=True)
        adv = torch.where(std > 0, (rewards - rewards.mean(1, keepdim=True)) / (std + 1e-6), 0.0)
        flat = std.view(-1) == 0
        keep = torch.arange(len(ids)) if k == 1 else torch.nonzero(~flat).view(-1)[:B]
        loss = torch.zeros(())
        for pos, p, out in groups:  # policy gradient over the kept groups' rollouts
            rows = [r for r, i in enumerate(pos) if i in set(keep.tolist())]
            if rows:
                sel = torch.tensor([r * G + g for r in rows for g in range(G)])
                seq = torch.cat([p[sel], out[sel]], 1)
                logits = policy(seq[:, :-1])[:, p.shape[1] - 1 :]
                logp = torch.log_softmax(logits, -1).gather(-1, out[sel, :, None]).squeeze(-1)
                m = (torch.cumsum((out[sel] == END).long(), 1) - (out[sel] == END).long()) == 0
                seq_logp = (logp * m).sum(1) / m.sum(1).clamp(min=1)
                loss = loss - (adv[[pos[r] for r in rows]].reshape(-1) * seq_logp).sum()
        if len(keep):
            opt.zero_grad(set_to_none=True)
            (loss / (len(keep) * G)).backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
        sampler.update(ids.repeat_interleave(G), reward=rewards.reshape(-1))
        zero_rolled.append(float(flat.float().mean()))
        zero_trained.append(float(flat[keep].float().mean()) if len(keep) else 0.0)
        mean_reward.append(float(rewards[keep].mean()) if len(keep) else 0.0)
        if step % args.log_every == 0 or step == args.steps - 1:
            held_back = len(pool) - sampler.stats().get("eligible", len(pool))
            print(f"{step:4d}  {zero_rolled[-1]:>20.0%} / {zero_trained[-1]:<20.0%} "
                  f"{held_back:>9d}  {mean_reward[-1]:.3f}")  # fmt: skip
    final = accuracy(policy, held[100:])
    print(
        f"zero-variance groups trained on: {np.mean(zero_trained):.0%} of the batch on average; "
        f"greedy accuracy {start:.2f} -> {final:.2f} [{time.perf_counter() - t0:.0f} s]"
    )
    return {
        "warm_steps": warm,
        "zero_variance_rolled": zero_rolled,
        "zero_variance_trained": zero_trained,
        "mean_reward": mean_reward,
        "accuracy_start": start,
        "accuracy_final": final,
        "stats": sampler.stats(),
        "seconds": time.perf_counter() - t0,
    }


if __name__ == "__main__":
    main()
