"""The two training tasks of ``benchmarks/efficacy.py``: data (scored by the gradum pipeline),
a tiny causal transformer, per-example losses and the held-out metric.

``arithmetic``
    ``builtin:graded?task=arithmetic``: ``a + b = c`` with a, b of L digits, L = 1..levels
    (the known difficulty). Tokens are digits, ``+``, ``=``, end; the numbers are written
    least-significant digit first (so the carry flows left to right, which a small causal model
    can learn). The model sees ``a+b=`` and is trained on the answer tokens; the metric is exact
    match on held-out problems (teacher-forced argmax over every answer token and the end token,
    which equals greedy decoding: the first wrong token is where greedy would go astray).

``lm``
    ``builtin:python-docs`` cut into chunks of <= 64 characters at word boundaries, documents
    split 80 / 10 / 10 into train / validation / test by a hash of their id (no document in two
    splits). A byte-level causal transformer; the metric is token-weighted cross-entropy (nats
    per byte) on held-out chunks.

Difficulty, bucket and any other column come from running ``pipelines.score`` on the training
split only (cached under the work directory).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
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


def _score(inp: str, out: Path, extra: list[str], fingerprint: str = "") -> None:
    """Run the gradum pipeline on ``inp`` into ``out`` unless a run with the same input and
    options is already there (its manifest is the commit point)."""
    key = " ".join([inp, fingerprint, *extra])
    stamp = out / ".efficacy-options"
    if (out / "manifest.json").exists() and stamp.exists() and stamp.read_text() == key:
        return
    cmd = [sys.executable, "-m", "pipelines.score", inp, "--output", str(out)]
    cmd += ["--overwrite", "--no-progress", "--direct_num_workers=2", *extra]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"scoring failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    stamp.write_text(key)


def _read(out: Path, names: list[str]) -> dict[str, np.ndarray]:
    import shards

    s = shards.ShardSet.open(out)
    cols = {n: np.asarray(s.column(n)) for n in names}
    cols["text"] = np.asarray(s.take(np.arange(s.num_rows), columns=["text"])["text"].to_pylist())
    return cols


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return path


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


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# -- arithmetic ----------------------------------------------------------------------------
_PLUS, _EQ, _END, _PAD = 10, 11, 12, 13


def encode_sum(text: str, levels: int) -> tuple[list[int], list[int]]:
    left, c = text.split("=")
    a, b = (s.strip() for s in left.split("+"))
    seq = [int(ch) for ch in a[::-1]] + [_PLUS] + [int(ch) for ch in b[::-1]] + [_EQ]
    answer_at = len(seq)
    seq += [int(ch) for ch in c.strip()[::-1]] + [_END]
    length = 3 * levels + 4
    seq += [_PAD] * (length - len(seq))
    x, y = seq[:-1], seq[1:]
    y = [t if answer_at - 1 <= i and t != _PAD else IGNORE for i, t in enumerate(y)]
    return x, y


def arithmetic(
    work: Path, n: int = 20_000, levels: int = 4, eval_n: int = 1000, test_n: int = 2000,
    difficulty: str = "chars", steps: int = 1200,
) -> Task:  # fmt: skip
    """The arithmetic task; ``difficulty`` is the pipeline's ``--difficulty`` spec ("" for its
    default mix of every CPU signal)."""
    from pipelines.corpora.graded import graded_records

    spec = f"builtin:graded?task=arithmetic&n={n}&levels={levels}&seed=0"
    out = work / f"arith-{n}-{levels}-{difficulty or 'default'}"
    extra = [f"--difficulty={difficulty}"] if difficulty else []
    _score(spec, out, extra)
    cols = _read(out, ["difficulty", "bucket", "level"])
    held = list(graded_records(n=eval_n + test_n, seed=1, task="arithmetic", levels=levels))
    splits = {"train": list(cols["text"]), "val": [r["text"] for r in held[:eval_n]]}
    splits["test"] = [r["text"] for r in held[eval_n:]]
    x, y = encode_splits(splits, lambda t: encode_sum(t, levels), torch.uint8)
    info = {
        "corpus": spec,
        "scored_with": "pipelines.score " + " ".join(extra or ["(default signals)"]),
        "spearman_difficulty_level": _spearman(cols["difficulty"], cols["level"]),
        "train": len(splits["train"]),
        "val": eval_n,
        "test": test_n,
    }
    columns = {k: cols[k] for k in ("difficulty", "bucket", "level")}
    return Task(
        "arithmetic", "accuracy", x, y, columns, vocab=14, steps=steps, batch_size=64, info=info
    )


# -- language models -----------------------------------------------------------------------
def _split_of(doc_id: str) -> str:
    """Documents split 60 / 20 / 10 / 10 into train / ref / val / test by a hash of their id (no
    document in two splits). ``ref`` is held out for the reference model (irreducible loss)."""
    h = int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) % 10
    return "train" if h < 6 else ("ref" if h < 8 else ("val" if h == 8 else "test"))


def _encode_bytes(text: str, length: int) -> tuple[list[int], list[int]]:
    b = list(text.encode("utf-8")[:length])
    seq = b + [256] * (length + 1 - len(b))
    y = [t if t != 256 else IGNORE for t in seq[1:]]
    return seq[:-1], y


def _pick(rng: np.random.Generator, items: list, n: int) -> list:
    pick = rng.choice(len(items), size=min(n, len(items)), replace=False)
    return [items[i] for i in sorted(pick)]


def attach_reference(
    task: Task, x_ref: torch.Tensor, y_ref: torch.Tensor, steps: int, seed: int = 12345
) -> None:
    """RHO-LOSS's irreducible loss, in-benchmark: train the task's own model shape on the
    held-out ``ref`` split (same optimizer and schedule, ``steps`` steps), then score every
    training record with it. Sets ``task.irreducible``, the columns ``ref_difficulty``
    (percentile rank of the reference loss, the usual LM curriculum signal) and ``ref_bucket``
    (its decile), and ``task.reference_cost`` in forward passes over one example (training:
    3 per example per step; scoring: 1 per training record)."""
    torch.manual_seed(seed)
    model = task.model()
    opt = torch.optim.AdamW(model.parameters(), lr=task.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        i = torch.randint(0, len(x_ref), (task.batch_size,), generator=gen)
        per, _ = task.per_example(model, x_ref[i].long(), y_ref[i].long())
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, task.lr)
        opt.zero_grad(set_to_none=True)
        per.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(task.x["train"]), 512):
            x = task.x["train"][i : i + 512].long()
            out.append(task.per_example(model, x, task.y["train"][i : i + 512].long())[0])
    irr = torch.cat(out).numpy().astype(np.float32)
    rank = (np.argsort(np.argsort(irr, kind="stable"), kind="stable") + 0.5) / len(irr)
    task.irreducible = irr
    task.columns["ref_difficulty"] = rank.astype(np.float32)
    task.columns["ref_bucket"] = np.minimum((rank * 10).astype(np.int16), 9)
    task.reference_cost = float(3 * steps * task.batch_size + len(irr))
    task.info["reference"] = (
        f"same model shape trained {steps} steps of {task.batch_size} on the held-out ref split "
        f"({len(x_ref):,} records), then one forward pass over the training split"
    )
    task.info["reference_val_loss"] = float(
        task.evaluate(model, "val") if "val" in task.x else float("nan")
    )


def language_model(
    work: Path, chars: int = 48, eval_n: int = 400, difficulty: str = "", lm: bool = False,
    steps: int = 500, ref_steps: int = 1000, pipeline: bool = True,
) -> Task:  # fmt: skip
    """The byte-level LM task on ``builtin:python-docs`` chunks (documents split 60/20/10/10,
    ``_split_of``). The training chunks are scored by the pipeline (``difficulty``: its
    ``--difficulty`` spec, "" for the default CPU-signal mix; ``lm=True`` adds ``--lm
    reference`` and orders by its perplexity), and a reference model trained on the ``ref``
    split gives the irreducible loss (``attach_reference``). ``pipeline=False`` skips the pipeline
    run: the difficulty is then the reference model's loss rank (``ref_difficulty``)."""
    from pipelines.corpora.python_docs import python_docs_records

    chunks: dict[str, list[dict]] = {"train": [], "ref": [], "val": [], "test": []}
    for rec in python_docs_records():
        part = _split_of(rec["id"])
        for j, piece in enumerate(textwrap.wrap(rec["text"], chars)):
            if len(piece) >= 16:
                chunks[part].append({"id": f"{rec['id']}#{j}", "text": piece})
    if pipeline:
        jsonl = _write_jsonl(work / f"lm-train-{chars}.jsonl", chunks["train"])
        if lm and not difficulty:
            difficulty = "perplexity"
        out = work / f"lm-{chars}-{difficulty or 'default'}{'-lm' if lm else ''}"
        extra = ["--id-field=id"] + ([f"--difficulty={difficulty}"] if difficulty else [])
        extra += ["--lm=reference"] if lm else []
        _score(str(jsonl), out, extra, hashlib.sha256(jsonl.read_bytes()).hexdigest())
        cols = _read(out, ["difficulty", "bucket"])
        scored_with = "pipelines.score " + " ".join(extra)
    else:
        cols = {"text": np.asarray([c["text"] for c in chunks["train"]], dtype=object)}
        scored_with = "reference-model loss (in-benchmark, trained on the held-out ref split)"
    rng = np.random.default_rng(0)
    texts = {"train": list(cols["text"]), "ref": [c["text"] for c in chunks["ref"]]}
    for part in ("val", "test"):
        texts[part] = [c["text"] for c in _pick(rng, chunks[part], eval_n)]
    length = chars + 8
    x, y = encode_splits(texts, lambda t: _encode_bytes(t, length), torch.int16)
    x_ref, y_ref = x.pop("ref"), y.pop("ref")
    info = {
        "corpus": f"builtin:python-docs, chunks of <= {chars} characters",
        "scored_with": scored_with,
        "train": len(texts["train"]),
        "val": len(texts["val"]),
        "test": len(texts["test"]),
        "mean_bytes": float(np.mean([len(t.encode()) for t in texts["train"]])),
    }
    columns = {k: cols[k] for k in ("difficulty", "bucket") if k in cols}
    name = "lm-perplexity" if lm else "lm"
    task = Task(
        name, "loss", x, y, columns, vocab=257, d=48, steps=steps, batch_size=32,
        eval_every=25, info=info,
    )  # fmt: skip
    attach_reference(task, x_ref, y_ref, ref_steps)
    if not pipeline:
        task.columns["difficulty"] = task.columns["ref_difficulty"]
        task.columns["bucket"] = task.columns["ref_bucket"]
    return task


# -- word-level LM with noise --------------------------------------------------------------
_WORD = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
_PAD_W, _UNK_W, _BOS_W = 0, 1, 2
NOISE_KINDS = ("clean", "boilerplate", "shuffled", "random")
BOILERPLATE = (
    "Copyright (c) 2001-2024 Python Software Foundation. All rights reserved.",
    "This page is licensed under the Python Software Foundation License Version 2.",
    "Previous topic | Next topic | This page | Report a bug | Show source",
    "Navigation: index | modules | next | previous | Python documentation",
    "This file was generated automatically; do not edit it by hand.",
    "Last updated on Dec 01, 2026. Found a bug? Created using Sphinx.",
    "Table of contents. Quick search. Enter search terms or a module name.",
    "Please donate to the Python Software Foundation. Theme: default. Copyright notice.",
)


def words(text: str) -> list[str]:
    """Word-level tokens: lower-case letter runs, digit runs, single punctuation marks."""
    return _WORD.findall(text.lower())


def make_noise(
    clean: list[list[str]], vocab_words: list[str], rate: float, rng: np.random.Generator
) -> tuple[list[list[str]], list[str]]:
    """Noise records to mix into ``clean`` so that they are ``rate`` of the result, in equal
    thirds: ``boilerplate`` (one of 8 fixed lines, verbatim: duplicated), ``shuffled`` (a clean
    record's words in random order) and ``random`` (words drawn uniformly from the vocabulary:
    the word-level form of random bytes). Returns (records, kind of each)."""
    n = int(round(rate / (1 - rate) * len(clean)))
    out, kinds = [], []
    for i in range(n):
        kind = ("boilerplate", "shuffled", "random")[i % 3]
        if kind == "boilerplate":
            toks = words(BOILERPLATE[int(rng.integers(len(BOILERPLATE)))])
        elif kind == "shuffled":
            toks = list(clean[int(rng.integers(len(clean)))])
            rng.shuffle(toks)
        else:
            k = int(rng.integers(12, 25))
            toks = [vocab_words[j] for j in rng.integers(0, len(vocab_words), k)]
        out.append(toks)
        kinds.append(kind)
    return out, kinds


def lm_words(
    work: Path | None = None, tokens: int = 24, vocab: int = 1024, noise: float = 0.25,
    eval_n: int = 500, steps: int = 600, ref_steps: int = 1000, limit: int | None = None,
) -> Task:  # fmt: skip
    """A word-level LM on ``builtin:python-docs`` with a noisy fraction, closer to what users
    train on: documents split 60/20/10/10 (``_split_of``), cut into chunks of ``tokens`` words
    (lower-case word / digit runs and punctuation; the ``vocab - 3`` most frequent training
    words, the rest ``<unk>``). ``noise`` of the train and ref records are noise
    (``make_noise``); val and test are clean, and the metric is held-out loss on clean text
    (nats per word). Difficulty for curricula: the reference model's loss (``attach_reference``),
    the signal an LM curriculum usually orders by; ``work`` is unused (no pipeline run)."""
    from pipelines.corpora.python_docs import python_docs_records

    chunks: dict[str, list[list[str]]] = {"train": [], "ref": [], "val": [], "test": []}
    for rec in python_docs_records(limit=limit):
        part = _split_of(rec["id"])
        toks = words(rec["text"])
        for j in range(0, len(toks), tokens):
            piece = toks[j : j + tokens]
            if len(piece) >= 8:
                chunks[part].append(piece)
    counts: dict[str, int] = {}
    for piece in chunks["train"]:
        for w in piece:
            counts[w] = counts.get(w, 0) + 1
    top = sorted(counts, key=lambda w: (-counts[w], w))[: vocab - 3]
    ids = {w: i + 3 for i, w in enumerate(top)}
    rng = np.random.default_rng(0)
    kinds: dict[str, list[str]] = {}
    for part in ("train", "ref"):
        noisy, kind = make_noise(chunks[part], top, noise, rng)
        mixed = [(c, "clean") for c in chunks[part]] + list(zip(noisy, kind, strict=True))
        order = rng.permutation(len(mixed))
        chunks[part] = [mixed[i][0] for i in order]
        kinds[part] = [mixed[i][1] for i in order]
    for part in ("val", "test"):
        chunks[part] = _pick(rng, chunks[part], eval_n)

    def encode(piece: list[str]) -> tuple[list[int], list[int]]:
        seq = [_BOS_W] + [ids.get(w, _UNK_W) for w in piece[:tokens]]
        seq += [_PAD_W] * (tokens + 1 - len(seq) + 1)
        y = [t if t != _PAD_W else IGNORE for t in seq[1:]]
        return seq[:-1], y

    x, y = encode_splits(chunks, encode, torch.int16)
    x_ref, y_ref = x.pop("ref"), y.pop("ref")
    kind = np.array(kinds["train"])
    kind_id = np.array([NOISE_KINDS.index(k) for k in kinds["train"]], dtype=np.int8)
    info = {
        "corpus": (
            f"builtin:python-docs, chunks of <= {tokens} words, vocabulary {vocab}; "
            f"{noise:.0%} of train and ref records are noise (thirds: duplicated boilerplate, "
            "shuffled-word chunks, uniformly random words)"
        ),
        "scored_with": "reference-model loss (in-benchmark, trained on the held-out ref split)",
        "train": len(chunks["train"]),
        "val": len(chunks["val"]),
        "test": len(chunks["test"]),
        "noise": {k: int((kind == k).sum()) for k in NOISE_KINDS},
        "unk_rate_test": float((x["test"] == _UNK_W).sum() / (y["test"] != IGNORE).sum()),
    }
    task = Task(
        "lm-words", "loss", x, y, {"noise_kind": kind_id}, vocab=vocab, d=48, steps=steps,
        batch_size=32, eval_every=25, info=info,
    )  # fmt: skip
    attach_reference(task, x_ref, y_ref, ref_steps)
    task.columns["difficulty"] = task.columns["ref_difficulty"]
    task.columns["bucket"] = task.columns["ref_bucket"]
    irr = task.irreducible
    task.info["irreducible_by_kind"] = {k: float(irr[kind == k].mean()) for k in NOISE_KINDS}
    return task


def lr_at(step: int, steps: int, base: float, warmup: int = 50) -> float:
    """Linear warm-up, then cosine decay to 10% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
