"""The arithmetic and byte-level LM tasks of ``benchmarks/efficacy.py``: data (scored by the
gradum pipeline), per-example losses and the held-out metric (the model and ``Task`` are in
``benchmarks/efficacy_model.py``, the noisy word-level task in ``benchmarks/efficacy_words.py``).

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
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from benchmarks.efficacy_model import IGNORE, Task, TinyGPT, encode_splits, lr_at

__all__ = ["IGNORE", "Task", "TinyGPT", "encode_splits", "lr_at"]

ROOT = Path(__file__).resolve().parents[1]


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
