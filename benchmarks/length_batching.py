"""Length-bucketed batching against padded batching, for the model scorers, side by side.

Usage: .venv/bin/python benchmarks/length_batching.py [--n 1500] [--models embedding,lm]
       [--threads 1] [--out FILE.json]

Records: the first ``n`` of ``builtin:python-docs`` (paragraphs of 200 to 4,000 characters:
mixed lengths), in corpus order. Three ways to batch them, each scored by the same model
(embedding: all-MiniLM-L6-v2 with torch, CPU; lm: a reference LM trained here on 2,000
records, CPU), timed after a warm-up:

- ``padded``: batches of the model's own batch size in arrival order, each padded to its
  longest text: what RunInference does with ``BatchElements`` and no length handling.
  embedding: calls of 16 texts to a scorer with no token budget and ``batch_size=16``, so one
  forward pass per call, padded to its longest text; lm: the same, calls of 16 texts to a
  scorer whose budget never binds (``max_batch_size=16``), one forward pass per call;
- ``sorted within 64`` (lm only, the baseline this benchmark used until 2026-12-07): calls
  of 64 texts to a scorer with ``token_budget=8192, max_batch_size=64``, each call sorted by
  tokens and split within itself (the LM scorer's defaults when the benchmark was written):
  already length batching inside a call, so not the padded baseline the issue names;
- ``sorted per batch``: batches of 256 in arrival order, each sorted by length into the
  model's batches by the scorer with its defaults (embedding: sorted by word pieces, cut by a
  budget of 2,048 padded word pieces and 64 texts; lm: by tokens, 2,048 padded tokens and
  64 texts on CPU, its default since 2026-12-03, 8,192 before);
- ``sorted per part``: the whole part sorted by length (characters) first
  (``pipelines.job.read`` does this when a model scorer runs), then batches of 256 as above.

docs/s (wall clock), CPU seconds of the process, and the ratio to ``padded`` (wall); outputs
are compared with ``padded``'s (max absolute difference per column).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(scorer, texts: list[str], order: list[int], batch: int) -> tuple[float, float, dict]:
    began, cpu = time.perf_counter(), time.process_time()
    parts: dict[str, list] = {}
    for lo in range(0, len(order), batch):
        idx = order[lo : lo + batch]
        out = scorer.score([texts[i] for i in idx])
        for k, v in out.items():
            parts.setdefault(k, []).append((idx, np.asarray(v)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    cols = {}
    for k, chunks in parts.items():
        shape = chunks[0][1].shape[1:]
        col = np.zeros((len(texts), *shape), dtype=np.float64)
        for idx, v in chunks:
            col[idx] = v
        cols[k] = col
    return elapsed, cpu, cols


def _load() -> float:
    """The 1-minute load average (the machine may be shared: record it with the figures)."""
    return round(os.getloadavg()[0], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--models", default="embedding,lm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    import scorers
    from pipelines.corpora import load_builtin

    torch.set_num_threads(args.threads)
    texts = [r["text"] for r in load_builtin(f"builtin:python-docs?limit={args.n}")]
    arrival = list(range(len(texts)))
    by_length = sorted(arrival, key=lambda i: len(texts[i]))
    results = {"n": len(texts), "threads": args.threads, "load_1m_at_start": _load(), "models": {}}
    for name in args.models.split(","):
        if name == "embedding":
            scorer = scorers.get("embedding", backend="torch")
            padded = scorers.get("embedding", backend="torch", batch_size=16, token_budget=0)
            own = 16
        else:
            from scorers.reference_lm import train_reference_lm

            work = tempfile.mkdtemp(prefix="gradum-lenbatch-")
            sample = [r["text"] for r in load_builtin("builtin:python-docs?limit=2000")]
            train_reference_lm(sample, work, steps=100, seed=0, progress=False)
            scorer = scorers.get("lm", model=work)
            padded = scorers.get("lm", model=work, token_budget=1 << 30, max_batch_size=16)
            within64 = scorers.get("lm", model=work, token_budget=8192, max_batch_size=64)
            own = 16
        ways = {"padded": (padded, arrival, own)}
        if name == "lm":
            ways["sorted within 64"] = (within64, arrival, 64)
        ways.update(
            {
                "sorted per batch": (scorer, arrival, 256),
                "sorted per part": (scorer, by_length, 256),
            }
        )
        for s, _, _ in ways.values():
            s.score(texts[:8])  # load the model, warm up
        row = {}
        base_cols = None
        for way, (s, order, batch) in ways.items():
            elapsed, cpu, cols = run(s, texts, order, batch)
            if base_cols is None:
                base_cols = cols
            diff = {k: float(np.nanmax(np.abs(cols[k] - base_cols[k]))) for k in cols}
            row[way] = {"seconds": round(elapsed, 2), "docs_s": round(len(texts) / elapsed, 1),
                        "cpu_s": round(cpu, 2), "max_abs_diff": diff}  # fmt: skip
        for way in ways:
            row[way]["ratio"] = round(row["padded"]["seconds"] / row[way]["seconds"], 2)
        row["load_1m_at_end"] = _load()
        results["models"][name] = row
        print(json.dumps({name: row}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
