"""The model and task container shared by the efficacy benchmarks (``benchmarks/efficacy.py``,
``benchmarks/efficacy_rl.py``): a tiny pre-LayerNorm causal transformer (GPT-2 layout), the
``Task`` (token arrays per split, scored columns, model / schedule settings), the learning-rate
schedule and the split encoder."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100


# -- model ---------------------------------------------------------------------------------
class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A pre-LayerNorm causal transformer with learned positions (GPT-2 layout, tiny)."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(_Block(d, heads) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln(h))


# -- task ----------------------------------------------------------------------------------
@dataclass
class Task:
    """Token arrays per split (inputs x, targets y with IGNORE where no loss), the training
    split's scored columns, and the model / schedule settings shared by every strategy."""

    name: str
    metric: str  # "accuracy" (higher is better) or "loss" (lower is better)
    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    columns: dict[str, np.ndarray]
    vocab: int
    d: int = 64
    layers: int = 2
    heads: int = 4
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    eval_every: int = 50
    info: dict = field(default_factory=dict)
    # the reference model's per-record loss on the training split (RHO-LOSS irreducible loss),
    # and what training and running it cost, in forward passes over one example
    irreducible: np.ndarray | None = None
    reference_cost: float = 0.0

    @property
    def seq_len(self) -> int:
        return int(self.x["train"].shape[1])

    def flops_per_forward(self) -> float:
        """Forward FLOPs for one example: 2 x (matmul parameters) x tokens + attention scores
        and values (2 x 2 x layers x T^2 x d); embedding lookups are free."""
        t, d = self.seq_len, self.d
        per_token = 2 * (self.layers * 12 * d * d + d * self.vocab)
        return float(t * per_token + 4 * self.layers * t * t * d)

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    def model(self) -> TinyGPT:
        return TinyGPT(self.vocab, self.d, self.layers, self.heads, self.x["train"].shape[1])

    def per_example(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over each example's target tokens, and whether all were argmax."""
        logits = model(x)
        tok = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            y.reshape(-1),
            ignore_index=IGNORE,
            reduction="none",
        ).view(y.shape)
        mask = y != IGNORE
        per = (tok * mask).sum(1) / mask.sum(1).clamp(min=1)
        right = ((logits.argmax(-1) == y) | ~mask).all(1)
        return per, right

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> float:
        """Exact-match accuracy, or token-weighted cross-entropy (nats per token)."""
        model.eval()
        hits, loss_sum, tokens = 0, 0.0, 0
        x_all, y_all = self.x[split], self.y[split]
        for i in range(0, len(x_all), 512):
            x, y = x_all[i : i + 512].long(), y_all[i : i + 512].long()
            per, right = self.per_example(model, x, y)
            n_tok = (y != IGNORE).sum(1)
            hits += int(right.sum())
            loss_sum += float((per * n_tok).sum())
            tokens += int(n_tok.sum())
        model.train()
        return hits / len(x_all) if self.metric == "accuracy" else loss_sum / tokens


def encode_splits(
    splits: dict[str, list[str]], encode, x_dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Texts per split -> (inputs, targets) tensors per split with ``encode(text) -> (x, y)``."""
    x, y = {}, {}
    for name, texts in splits.items():
        enc = [encode(t) for t in texts]
        x[name] = torch.tensor([e[0] for e in enc], dtype=x_dtype)
        y[name] = torch.tensor([e[1] for e in enc], dtype=torch.int16)
    return x, y


def lr_at(step: int, steps: int, base: float, warmup: int = 50) -> float:
    """Linear warm-up, then cosine decay to 10% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
