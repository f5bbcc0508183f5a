"""The RL task of ``benchmarks/efficacy_rl.py``: a tiny policy post-trained with group-relative
advantages (GRPO) on ``builtin:graded`` arithmetic prompts with known levels.

Prompts ``"a + b ="`` with a, b of L digits (L = 1..levels, the known level); tokens are the
digits, ``+``, ``=``, end (numbers least-significant digit first, as in the supervised
arithmetic task, so the carry flows left to right). The policy is the TinyGPT of
``benchmarks/efficacy_model.py``; its base is trained once by supervised fine-tuning (SFT,
teacher-forced answers) on records of a different seed, for a budget that leaves the levels
graded: the easy ones mostly solved, the hard ones mostly not (the usual start of RL
post-training: prompts that are solved or hopeless give no signal).

One RL step (``train`` in ``benchmarks/efficacy_rl.py``): G sampled answers per prompt
(temperature 1, at most L + 2 tokens); reward 1 for an exact match of the answer and end token,
else 0; advantages relative to the prompt's group (GRPO, Shao et al. 2024):

    A_ik = (r_ik - mean_k r_ik) / (std_k r_ik + 1e-6)    (0 for a zero-variance group)

and the policy-gradient loss -mean_ik(A_ik (1 / |o_ik|) sum_t log pi(o_ikt)) (on-policy: one
update per batch, so the clipped ratio is 1; no KL term). The metric is the expected reward on
held-out prompts (balanced over levels): the mean exact match of answers sampled at temperature
1, the quantity RL maximises (greedy exact match, the reward at temperature 0, is recorded too).

Cost accounting (FLOPs): tokens through the model. A rollout costs one forward pass over its
prompt and answer tokens (generation with a KV cache); a trained sequence three (forward and
backward). FLOPs = tokens x 2 (matmul parameters) per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.efficacy_model import TinyGPT, lr_at

PLUS, EQ, END, PAD = 10, 11, 12, 13
VOCAB = 14


def prompt_tokens(prompt: str) -> list[int]:
    """``"a + b ="`` -> reversed digits of a, ``+``, reversed digits of b, ``=``."""
    a, b = (s.strip() for s in prompt.rstrip("=").split("+"))
    return [int(c) for c in a[::-1]] + [PLUS] + [int(c) for c in b[::-1]] + [EQ]


def answer_tokens(answer: str) -> list[int]:
    return [int(c) for c in answer.strip()[::-1]] + [END]


@dataclass
class RLTask:
    """Prompt pool (training) and held-out splits, the pool's columns for the sampler
    (``level``; ``angle_concentration`` under the base policy), the base policy's weights and
    the RL settings shared by every strategy."""

    levels: int
    pool: list[dict]
    val: list[dict]
    test: list[dict]
    columns: dict[str, np.ndarray]
    base: dict[str, torch.Tensor]
    name: str = "rl-arithmetic"
    metric: str = "accuracy"
    d: int = 64
    layers: int = 2
    heads: int = 4
    steps: int = 300
    batch_size: int = 16  # prompts per step
    group: int = 8  # rollouts per prompt (G)
    lr: float = 3e-4
    eval_every: int = 25
    eval_samples: int = 2
    info: dict = field(default_factory=dict)
    base_cost_tokens: float = 0.0  # tokens x 3 of the SFT (one-off, shared by every run)

    @property
    def max_len(self) -> int:
        return 3 * self.levels + 4

    def flops_per_token(self) -> float:
        return 2.0 * (self.layers * 12 * self.d * self.d + self.d * VOCAB)

    def new_model(self) -> TinyGPT:
        return TinyGPT(VOCAB, self.d, self.layers, self.heads, self.max_len)

    def policy(self) -> TinyGPT:
        m = self.new_model()
        m.load_state_dict(self.base)
        return m

    @torch.no_grad()
    def evaluate(self, model: TinyGPT, split: str) -> float:
        """The expected reward on ``split`` ("val" or "test"): the mean exact match of
        ``eval_samples`` answers per prompt sampled at temperature 1 (the policy RL optimises),
        with a generator seeded by the split alone (the same draws for every run)."""
        was = model.training
        model.eval()
        gen = torch.Generator().manual_seed(12345 if split == "test" else 54321)
        rates = sampled_pass_rates(model, getattr(self, split), self.eval_samples, gen)
        model.train(was)
        return float(rates.mean())

    def greedy(self, model: TinyGPT, split: str) -> float:
        """Exact-match accuracy of greedy answers (the reward at temperature 0)."""
        return float(np.mean(per_level_hits(model, getattr(self, split))[0]))


# -- rollouts ------------------------------------------------------------------------------
def generate(
    model: TinyGPT, prompts: torch.Tensor, n_new: int, gen: torch.Generator | None
) -> torch.Tensor:
    """``n_new`` answer tokens after each prompt row (same length): sampled at temperature 1
    with ``gen``, or greedy when ``gen`` is None."""
    seq = prompts
    for _ in range(n_new):
        logits = model(seq)[:, -1].float()
        if gen is None:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        seq = torch.cat([seq, nxt], 1)
    return seq[:, prompts.shape[1] :]


def answer_mask(out: torch.Tensor) -> torch.Tensor:
    """True on the generated tokens up to and including the first end token."""
    is_end = out == END
    before = torch.cumsum(is_end.long(), 1) - is_end.long() == 0
    return before


def exact_match(out: torch.Tensor, answers: list[list[int]]) -> torch.Tensor:
    """1.0 where the generated tokens up to the first end token equal the answer and its end."""
    hits = torch.zeros(out.shape[0])
    for i, ans in enumerate(answers):
        k = len(ans)
        hits[i] = float(k <= out.shape[1] and out[i, :k].tolist() == ans)
    return hits


def by_level(records: list[dict]) -> dict[int, list[int]]:
    """Positions of the records of each level (prompts of one level have one length)."""
    out: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        out.setdefault(int(r["level"]), []).append(i)
    return out


@torch.no_grad()
def per_level_hits(model: TinyGPT, records: list[dict]) -> tuple[np.ndarray, dict[int, float]]:
    """Greedy exact match per record, and the accuracy per level."""
    was = model.training
    model.eval()
    hits = np.zeros(len(records))
    for lv, pos in by_level(records).items():
        for s in range(0, len(pos), 512):
            part = pos[s : s + 512]
            p = torch.tensor([prompt_tokens(records[i]["prompt"]) for i in part])
            out = generate(model, p, lv + 2, None)
            hits[part] = exact_match(out, [answer_tokens(records[i]["answer"]) for i in part])
    model.train(was)
    acc = {lv: float(hits[pos].mean()) for lv, pos in sorted(by_level(records).items())}
    return hits, acc


def grpo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """[prompts, G] rewards -> (r - group mean) / (group std + 1e-6); 0 where the std is 0."""
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(1, unbiased=False, keepdim=True)
    return torch.where(std > 0, (rewards - mean) / (std + 1e-6), torch.zeros_like(rewards))


def sequence_logp(model: TinyGPT, prompts: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(1 / |o|) sum_t log pi(o_t | prompt, o_<t) over each row's answer tokens (to the end)."""
    seq = torch.cat([prompts, out], 1)
    logits = model(seq[:, :-1])[:, prompts.shape[1] - 1 :]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, out.unsqueeze(-1)).squeeze(-1)
    m = answer_mask(out).float()
    return (logp * m).sum(1) / m.sum(1).clamp(min=1)


# -- the base policy (SFT) -----------------------------------------------------------------
def sft_batch(records: list[dict], levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced (inputs, targets) padded to the task's length; loss on the answer only."""
    length = 3 * levels + 4
    xs, ys = [], []
    for r in records:
        p, a = prompt_tokens(r["prompt"]), answer_tokens(r["answer"])
        seq = (p + a + [PAD] * length)[: length + 1]
        y = [t if len(p) - 1 <= i < len(p) - 1 + len(a) else -100 for i, t in enumerate(seq[1:])]
        xs.append(seq[:-1])
        ys.append(y)
    return torch.tensor(xs), torch.tensor(ys)


def train_base(
    task: RLTask, records: list[dict], steps: int, stop_acc: float = 1.0, check_every: int = 50,
    batch: int = 64, lr: float = 3e-3, seed: int = 0,
) -> tuple[int, float]:  # fmt: skip
    """Supervised warm start of the policy on ``records`` (AdamW, warm-up + cosine over
    ``steps``), stopped at the first check (every ``check_every`` steps) where the validation
    reward (``RLTask.evaluate``: sampled answers) reaches ``stop_acc``: a base that solves the
    easy levels and not yet the hard ones (this small model learns the carry rule suddenly, so a fixed step count would
    give a solved or a hopeless base depending on the seed). Sets ``task.base``; returns the
    steps taken and their cost in tokens x 3 (forward and backward)."""
    torch.manual_seed(seed)
    model = task.new_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    tokens, step = 0, 0
    for step in range(steps):
        if step and step % check_every == 0 and task.evaluate(model, "val") >= stop_acc:
            break
        i = torch.randint(0, len(records), (batch,), generator=gen).tolist()
        x, y = sft_batch([records[k] for k in i], task.levels)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1), ignore_index=-100)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int((x != PAD).sum())
    else:
        step = steps
    task.base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return step, 3.0 * tokens


# -- building the task ---------------------------------------------------------------------
def graded(n: int, levels: int, seed: int) -> tuple[str, list[dict]]:
    """``builtin:graded`` arithmetic records (``pipelines.corpora.load_builtin``: pure)."""
    from pipelines.corpora import load_builtin

    spec = f"builtin:graded?task=arithmetic&n={n}&levels={levels}&seed={seed}"
    return spec, list(load_builtin(spec))


@torch.no_grad()
def sampled_pass_rates(
    model: TinyGPT, records: list[dict], k: int, gen: torch.Generator
) -> np.ndarray:
    """Each record's pass rate over ``k`` sampled answers (temperature 1)."""
    rates = np.zeros(len(records))
    for lv, pos in by_level(records).items():
        p = torch.tensor([prompt_tokens(records[i]["prompt"]) for i in pos])
        out = generate(model, p.repeat_interleave(k, 0), lv + 2, gen)
        ans = [answer_tokens(records[i]["answer"]) for i in pos for _ in range(k)]
        rates[pos] = exact_match(out, ans).view(len(pos), k).mean(1).numpy()
    return rates


def build_rl_task(
    levels: int = 4, pool_n: int = 1000, eval_n: int = 400, test_n: int = 800,
    sft_steps: int = 1500, stop_acc: float = 0.4, group: int = 8, steps: int = 300,
    sft_n: int = 20_000, d: int = 64, layers: int = 2, heads: int = 4,
) -> RLTask:  # fmt: skip
    """The task: prompt pool (seed 0), validation and test prompts (seed 1), the base policy
    (TinyGPT of width ``d``) trained by SFT on ``sft_n`` records of seed 2, and the pool's angle
    concentration under the base policy (``efficacy_rl_angle``: the scorer of ``scorers.lm``)."""
    from benchmarks.efficacy_rl_angle import policy_angles

    spec, pool = graded(pool_n, levels, 0)
    _, held = graded(eval_n + test_n, levels, 1)
    _, sft = graded(sft_n, levels, 2)
    level = np.array([r["level"] for r in pool], dtype=np.int16)
    task = RLTask(levels, pool, held[:eval_n], held[eval_n:], {"level": level}, {})
    task.group, task.steps = group, steps
    task.d, task.layers, task.heads = d, layers, heads
    taken, task.base_cost_tokens = train_base(task, sft, sft_steps, stop_acc)
    policy = task.policy()
    angle = policy_angles(policy, [r["prompt"] for r in pool], prompt_tokens)
    task.columns["angle_concentration"] = angle.astype(np.float32)
    rates = sampled_pass_rates(policy, pool, group, torch.Generator().manual_seed(99))
    _, test_acc = per_level_hits(policy, task.test)
    test_rates = sampled_pass_rates(policy, task.test, 8, torch.Generator().manual_seed(98))
    test_level = np.array([r["level"] for r in task.test])
    ra = np.argsort(np.argsort(angle))
    rl = np.argsort(np.argsort(level + 1e-3 * np.arange(level.size)))
    task.info = {
        "corpus": spec,
        "train": len(pool),
        "val": eval_n,
        "test": test_n,
        "base": (
            f"SFT on {sft_n:,} records of seed 2 (teacher-forced, batch 64, cosine schedule over "
            f"{sft_steps} steps), stopped after {taken} steps, at the first check (every 50) "
            f"with validation reward (sampled) >= {stop_acc}"
        ),
        "base_test_accuracy_by_level": test_acc,
        "base_test_reward_by_level": {
            int(lv): float(test_rates[test_level == lv].mean()) for lv in range(1, levels + 1)
        },
        "base_pool_pass_rate_by_level": {
            int(lv): float(rates[level == lv].mean()) for lv in range(1, levels + 1)
        },
        "base_pool_zero_variance_share": float(((rates == 0) | (rates == 1)).mean()),
        "spearman_angle_level": float(np.corrcoef(ra, rl)[0, 1]),
        "angle_by_level": {
            int(lv): float(np.nanmean(angle[level == lv])) for lv in range(1, levels + 1)
        },
    }
    return task
