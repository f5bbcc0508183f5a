"""The noisy word-level LM task of ``benchmarks/efficacy.py`` (``lm-words``): python-docs
chunks of words with a known fraction of noise (duplicated boilerplate, shuffled-word chunks,
uniformly random words), a reference model's loss for curricula and RHO-LOSS, and optionally
the pipeline's own embedding clusters for bandits over clusters."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

from benchmarks.efficacy_model import IGNORE, Task, encode_splits
from benchmarks.efficacy_tasks import _pick, _score, _split_of, _write_jsonl, attach_reference

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
    clusters: int = 0,
) -> Task:  # fmt: skip
    """A word-level LM on ``builtin:python-docs`` with a noisy fraction, closer to what users
    train on: documents split 60/20/10/10 (``_split_of``), cut into chunks of ``tokens`` words
    (lower-case word / digit runs and punctuation; the ``vocab - 3`` most frequent training
    words, the rest ``<unk>``). ``noise`` of the train and ref records are noise
    (``make_noise``); val and test are clean, and the metric is held-out loss on clean text
    (nats per word). Difficulty for curricula: the reference model's loss (``attach_reference``),
    the signal an LM curriculum usually orders by. ``clusters`` > 0 adds the column ``cluster``:
    the pipeline's own embedding (all-MiniLM-L6-v2) and spherical k-means with that k, run on
    the training records (``attach_clusters``, cached under ``work``)."""
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
    if clusters:
        if work is None:
            raise ValueError("lm_words: clusters need a work directory for the pipeline run")
        attach_clusters(task, [" ".join(c) for c in chunks["train"]], work, clusters)
    return task


def attach_clusters(task: Task, texts: list[str], work: Path, k: int) -> None:
    """Cluster the training records with the pipeline's own embedding and k-means: run
    ``pipelines.score`` (a subprocess: its CLI is the stable interface) with ``--embedding
    default --clusters k`` on the texts, ids = positions, and read ``cluster`` back in record
    order. Sets ``task.columns["cluster"]`` and the noise mix of each cluster in ``task.info``."""
    import shards

    jsonl = _write_jsonl(
        work / f"words-train-{len(texts)}.jsonl",
        [{"id": f"{i:07d}", "text": t} for i, t in enumerate(texts)],
    )
    out = work / f"words-clusters-{len(texts)}-{k}"
    extra = [
        "--id-field=id",
        "--signals=length",
        "--embedding=default",
        f"--clusters={k}",
        "--seed=0",
    ]
    _score(str(jsonl), out, extra, hashlib.sha256(jsonl.read_bytes()).hexdigest())
    s = shards.ShardSet.open(out)
    ids = np.asarray(s.take(np.arange(s.num_rows), columns=["id"])["id"].to_pylist())
    cl = np.asarray(s.column("cluster"))
    pos = ids.astype(np.int64)
    if s.num_rows != len(texts) or np.unique(pos).size != len(texts):
        raise SystemExit(f"clustering: expected {len(texts)} distinct records back from {out}")
    cluster = np.empty(len(texts), dtype=np.int32)
    cluster[pos] = cl
    task.columns["cluster"] = cluster
    kind = task.columns["noise_kind"]
    task.info["clusters"] = {
        "k": k,
        "scored_with": "pipelines.score " + " ".join(extra),
        "noise_share_by_cluster": [float((kind[cluster == c] > 0).mean()) for c in range(k)],
        "size_by_cluster": [int((cluster == c).sum()) for c in range(k)],
    }
