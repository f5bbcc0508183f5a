"""A small reference causal LM trained on the corpus itself, for offline perplexity.

No pretrained causal LM can be downloaded offline, so :func:`train_reference_lm` trains a
compact GPT-2-style model (Radford et al. 2019) with its own byte-level BPE tokenizer
(Sennrich et al. 2016, via the ``tokenizers`` library) on a sample of texts, and saves a
normal Hugging Face folder that ``AutoModelForCausalLM`` / ``AutoTokenizer`` (and therefore
``scorers.get("lm", model=path)``) load like any other. Perplexity under a small reference
model is the data-pruning signal of Ankner et al. 2024 ("Perplexed by perplexity",
arXiv:2405.20541).

Training: documents are joined with ``<|endoftext|>`` (also BOS/EOS/PAD/UNK), random
windows of ``seq_len`` tokens are drawn, AdamW with linear warm-up and cosine decay.
Deterministic for a given ``seed`` on one machine. The defaults train in a few minutes on
2 CPU cores.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from pathlib import Path

from scorers._lazy import require
from scorers.base import replace_surrogates

SPECIAL = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int) -> object:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts``."""
    tk = require("tokenizers")
    transformers = require("transformers")
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL,
        eos_token=SPECIAL,
        unk_token=SPECIAL,
        pad_token=SPECIAL,
        model_max_length=10**9,
    )


def train_reference_lm(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    vocab_size: int = 4096,
    n_layer: int = 2,
    n_embd: int = 128,
    n_head: int = 4,
    seq_len: int = 128,
    max_positions: int = 512,
    batch_size: int = 16,
    steps: int = 600,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
) -> str:
    """Train a compact GPT-2 + BPE tokenizer on ``texts``; save to ``out_dir``; return its path.

    The folder holds ``config.json``, ``model.safetensors``, the tokenizer files and
    ``gradum_reference_lm.json`` (training parameters, corpus size, final loss).
    """
    torch = require("torch")
    transformers = require("transformers")
    tqdm = require("tqdm").tqdm

    docs = [replace_surrogates(t) for t in texts if t and t.strip()]
    if not docs:
        raise ValueError("train_reference_lm needs at least one non-empty text")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tokenizer = train_tokenizer(docs, vocab_size)
    eos = tokenizer.convert_tokens_to_ids(SPECIAL)
    stream: list[int] = []
    for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        stream.append(eos)
        stream.extend(ids)
    stream.append(eos)
    data = torch.tensor(stream, dtype=torch.long)
    seq_len = min(seq_len, len(data) - 1, max_positions)
    if seq_len < 2:
        raise ValueError("corpus too small to train on")

    config = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=max_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    n_windows = len(data) - seq_len
    bar = tqdm(range(steps), desc="reference LM", disable=not progress, unit="step")
    loss_ema = float("nan")
    t0 = time.perf_counter()
    for step in bar:
        starts = torch.randint(0, n_windows, (batch_size,), generator=gen)
        batch = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        val = float(loss.item())
        loss_ema = val if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * val
        if progress:
            bar.set_postfix(loss=f"{loss_ema:.3f}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "kind": "gradum reference LM (GPT-2 style, byte-level BPE)",
        "documents": len(docs),
        "train_tokens": len(stream),
        "vocab_size": len(tokenizer),
        "n_layer": n_layer,
        "n_embd": n_embd,
        "n_head": n_head,
        "seq_len": seq_len,
        "max_positions": max_positions,
        "batch_size": batch_size,
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "final_loss_ema": loss_ema,
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "gradum_reference_lm.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return str(out)
