"""A plain PyTorch training loop driven by ``sampler.Sampler`` with a difficulty curriculum.

What it shows:

- bringing your own difficulty scores: the source is a dict ``{"difficulty": np.ndarray}``
  (here the known ``level`` of each record of the builtin graded arithmetic corpus, normalised
  to [0, 1]; in practice any score column from the scoring pipeline or your own);
- ``Curriculum(pacing.root(...))``: early batches come from the easiest items only, the eligible
  set grows with the square-root pacing until every item is eligible;
- feedback with ``sampler.update(batch.indices, loss=per_example_loss)`` (Curriculum ignores it,
  but the same loop works unchanged with ``UCB`` or ``Prioritized``);
- ``sampler.stats()`` for the mean difficulty served;
- exact resume: ``torch.save(sampler.state_dict())`` then ``load_state_dict(torch.load(...,
  weights_only=True))`` into a fresh sampler, which then yields the very same next batches.

The task: ``"a + b ="`` with a and b of 1..5 digits (level = digit count). The prompt's
characters are read into fixed right-aligned digit slots (one-hot) and a small MLP predicts the
digits of the sum; an answer counts as correct only when every digit is right. Accuracy is
measured on held-out records (other record ids, so other operands).

Run: ``.venv/bin/python examples/pytorch_loop.py`` (a few seconds on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.corpora.graded import graded_records
from sampler import Sampler, pacing
from sampler.strategies import Curriculum

LEVELS = 5  # operands of 1..LEVELS digits
DIGITS = LEVELS + 1  # digits of the sum
BLANK = 10  # the "no digit" slot value


def encode(prompts: list[str]) -> torch.Tensor:
    """``"a + b ="`` -> one-hot float tensor [n, 2 * LEVELS * 11] of right-aligned digit slots."""
    slots = np.full((len(prompts), 2, LEVELS), BLANK, dtype=np.int64)
    for row, prompt in enumerate(prompts):
        a, b = prompt.rstrip("= ").split(" + ")
        for k, operand in enumerate((a, b)):
            slots[row, k, LEVELS - len(operand) :] = [int(ch) for ch in operand]
    onehot = torch.nn.functional.one_hot(torch.from_numpy(slots), BLANK + 1)
    return onehot.reshape(len(prompts), -1).float()


def targets(answers: list[str]) -> torch.Tensor:
    """Digits of the sum, zero-padded on the left to DIGITS: LongTensor [n, DIGITS]."""
    return torch.tensor([[int(ch) for ch in ans.zfill(DIGITS)] for ans in answers])


def decode(digits: torch.Tensor) -> list[str]:
    return [str(int("".join(map(str, row)))) for row in digits.tolist()]


class DigitMLP(nn.Module):
    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * LEVELS * (BLANK + 1), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, DIGITS * 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, DIGITS, 10)  # logits per digit of the sum


def load(n: int, seed: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
    recs = list(graded_records(n, seed=seed, task="arithmetic", levels=LEVELS, start=start))
    x = encode([r["prompt"] for r in recs])
    y = targets([r["answer"] for r in recs])
    return x, y, recs


def evaluate(model: nn.Module, x: torch.Tensor, recs: list[Any]) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        pred = decode(model(x).argmax(-1))
    model.train()
    ok = np.array([p == r["answer"] for p, r in zip(pred, recs, strict=True)])
    level = np.array([r["level"] for r in recs])
    out = {"accuracy": float(ok.mean())}
    for lv in range(1, LEVELS + 1):
        out[f"accuracy_level_{lv}"] = float(ok[level == lv].mean())
    return out


def init_distributed() -> None:
    """Under ``torchrun`` (WORLD_SIZE > 1), join the process group *before* building the
    Sampler: it reads its rank and world size when it is built (and checks them at every draw),
    so each rank serves its own slice of the global batch."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)  # model init only; the sampler has its own seed

    x, y, recs = load(args.train_size, seed=args.seed)
    x_test, _, recs_test = load(1000, seed=args.seed, start=args.train_size)  # unseen ids
    levels = np.array([r["level"] for r in recs], dtype=np.float32)
    difficulty = (levels - 1) / (LEVELS - 1)  # your own scores go here, any scale

    def make_sampler() -> Sampler:
        # 10% of the data at step 0, all of it after half the steps (square-root pacing)
        pace = pacing.root(T=max(1, args.steps // 2), p=2, c0=0.1)
        return Sampler(
            {"difficulty": difficulty},
            Curriculum(pace),
            batch_size=args.batch_size,
            seed=args.seed,
            device="cpu",
        )

    init_distributed()  # the process group first, then the Sampler
    sampler = make_sampler()
    model = DigitMLP()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses: list[float] = []
    served: list[float] = []
    for step, batch in zip(range(args.steps), sampler, strict=False):
        logits = model(x[batch.indices])
        per_token = nn.functional.cross_entropy(
            logits.reshape(-1, 10), y[batch.indices].reshape(-1), reduction="none"
        )
        per_example = per_token.view(-1, DIGITS).mean(1)
        loss = per_example.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sampler.update(batch.indices, loss=per_example.detach())
        st = sampler.stats()
        losses.append(loss.item())
        served.append(st["last_batch_difficulty"])
        if step % args.log_every == 0 or step == args.steps - 1:
            print(
                f"step {step:4d}  loss {loss.item():.3f}  "
                f"difficulty served: batch {st['last_batch_difficulty']:.2f} "
                f"mean {st['mean_difficulty_served']:.2f}  eligible {st['fraction']:.0%}"
            )

    # exact resume: save, load into a fresh sampler, both yield the same next batches
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sampler.pt")
        torch.save(sampler.state_dict(), path)
        restored = make_sampler()
        restored.load_state_dict(torch.load(path, weights_only=True))
    after = [sampler.sample().indices for _ in range(3)]
    again = [restored.sample().indices for _ in range(3)]
    resume_identical = all(torch.equal(a, b) for a, b in zip(after, again, strict=True))

    ev = evaluate(model, x_test, recs_test)
    print(
        f"held-out accuracy {ev['accuracy']:.1%}  ("
        + ", ".join(f"L{lv} {ev[f'accuracy_level_{lv}']:.0%}" for lv in range(1, LEVELS + 1))
        + f")  resume identical: {resume_identical}  [{time.perf_counter() - t0:.1f} s]"
    )
    return {
        "losses": losses,
        "served_difficulty": served,
        "resume_identical": resume_identical,
        "restored_step": restored.step,
        "stats": sampler.stats(),
        **ev,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train-size", type=int, default=20_000)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for a tiny model)"
    )
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    # tiny ops gain nothing from intra-op threads, and on a busy CPU they spin-wait for each
    # other (measured: 40 s instead of 3 s on 2 cores while another job used them)
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
