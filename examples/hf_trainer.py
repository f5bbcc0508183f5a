"""A Hugging Face ``Trainer`` whose batches come from the sampler (``sampler.hf.make_trainer``).

What it shows:

- ``make_trainer(sampler, model=..., args=..., train_dataset=...)`` returns a ``Trainer``
  subclass whose train DataLoader draws every batch from the sampler and whose ``compute_loss``
  feeds each example's token-mean loss back with ``sampler.update(ids, loss=...)``;
- ``UCB(group="bucket", reward="loss")``: a bandit over groups of the data (here the five
  ``level`` buckets of the builtin graded *language* corpus) that shifts probability towards
  the groups with the highest recent loss; ``--strategy prioritized`` switches to per-item
  prioritized replay on the loss instead;
- ``sampler.stats()`` after training: feedback count and mean loss, group probabilities,
  counts and scores.

The model is a tiny GPT-2 built from a config (2 layers, width 64) over raw UTF-8 bytes
(vocabulary 256 bytes + 1 pad id), so no tokenizer or weights are downloaded; the network is
never touched (``HF_HUB_OFFLINE=1`` is set before ``transformers`` is imported). Each example is
the first ``--seq-len`` bytes of a graded record.

Run: ``.venv/bin/python examples/hf_trainer.py`` (about 10 s on a 2-core CPU, half of it
importing ``transformers``). Needs the ``pipeline`` extra (transformers, accelerate).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never touch the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from pipelines.corpora.graded import graded_records  # noqa: E402
from sampler import Sampler  # noqa: E402
from sampler.hf import make_trainer  # noqa: E402
from sampler.strategies import UCB, Prioritized  # noqa: E402

LEVELS = 5
PAD = 256  # byte values are 0..255
VOCAB = 257


class ByteDataset(torch.utils.data.Dataset):
    """UTF-8 bytes of each text, cut / padded to ``seq_len``; padding is masked out of the loss
    (labels -100). The sampler hands out row ids; ``ds[i]`` is row i."""

    def __init__(self, texts: list[str], seq_len: int) -> None:
        ids = torch.full((len(texts), seq_len), PAD, dtype=torch.int64)
        for row, text in enumerate(texts):
            b = text.encode("utf-8")[:seq_len]
            if b:
                ids[row, : len(b)] = torch.frombuffer(bytearray(b), dtype=torch.uint8).long()
        self.ids = ids

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.ids[i]
        mask = (x != PAD).long()
        return {"input_ids": x, "attention_mask": mask, "labels": x.masked_fill(x == PAD, -100)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()

    recs = list(graded_records(args.records, seed=args.seed, task="language", levels=LEVELS))
    dataset = ByteDataset([r["text"] for r in recs], args.seq_len)
    level = np.array([r["level"] for r in recs], dtype=np.int32)
    source = {"bucket": level, "difficulty": (level - 1) / (LEVELS - 1)}
    if args.strategy == "ucb":
        # DUMP's c and tau; a short window so the probabilities follow the recent losses
        strategy: Any = UCB(group="bucket", reward="loss", window=64)
    else:
        # unseen items start above any loss (ln 257 = 5.5 at init), so each is tried once
        # before replay concentrates on the high-loss ones (PER's "max priority" for new items)
        strategy = Prioritized(signal="loss", alpha=0.6, beta=0.4, initial=8.0)
    torch.manual_seed(args.seed)  # model init only; the sampler has its own seed
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=args.seq_len,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=PAD,
        eos_token_id=PAD,
        pad_token_id=PAD,
    )
    model = transformers.GPT2LMHeadModel(config)

    with tempfile.TemporaryDirectory() as tmp:
        targs = transformers.TrainingArguments(
            output_dir=tmp,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=2e-3,
            warmup_steps=max(1, args.steps // 20),
            logging_steps=max(1, args.steps // 6),
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,  # no prefetch: every batch sees all earlier feedback
            disable_tqdm=True,
            seed=args.seed,
        )
        # built after TrainingArguments, which sets up the process group under torchrun /
        # accelerate: the Sampler reads its rank and world size from it (make_trainer checks)
        sampler = Sampler(
            source, strategy, batch_size=args.batch_size, seed=args.seed, device="cpu"
        )
        trainer = make_trainer(sampler, model=model, args=targs, train_dataset=dataset)
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    st = sampler.stats()
    print(
        f"\nsampler ({args.strategy}): {st['updates']} updates, feedback on "
        f"{st['feedback']['count']} examples, mean loss {st['feedback']['mean_loss']:.3f}, "
        f"coverage {st['coverage']:.0%}, entropy {st['entropy']:.3f}"
    )
    out: dict[str, Any] = {"losses": losses, "stats": st}
    if args.strategy == "ucb":
        probs = st["group_probabilities"].tolist()
        print("bucket  probability  losses  score (window mean loss + bonus)")
        for lab, p, n, s in zip(
            st["group_labels"].tolist(),
            probs,
            st["group_counts"].tolist(),
            st["group_scores"].tolist(),
            strict=True,
        ):
            print(f"  L{lab}     {p:8.3f}  {n:6d}  {s:.3f}")
        out["group_probabilities"] = probs
    print(f"[{time.perf_counter() - t0:.1f} s]")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--strategy", choices=["ucb", "prioritized"], default="ucb")
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
