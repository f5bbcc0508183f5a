"""Embedding backends side by side on CPU: throughput, fidelity to torch float32, and the
effect on centroid_distance.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embedding.py [--docs 300 --k 7 --rounds 2 --threads 1]

Texts: the first ``--docs`` paragraphs of builtin:python-docs. Model: the packaged
all-MiniLM-L6-v2. For each installed backend (torch, onnx, onnx-int8, openvino) and
max_seq_length 256 (the model's own) and 128:

- docs/s: the best of ``--rounds`` timed passes over all texts, the configurations taking
  turns within each round (so that load from other jobs hits them alike), after a warm-up
  pass over 32 texts (setup, including a first export, paid once per machine and cached,
  reported separately); ``--threads`` torch / ONNX Runtime / OpenVINO threads (default 1,
  as each worker of the job runs);
- cosine: mean and minimum cosine of each text's embedding to torch float32 at the same
  max_seq_length (numerical fidelity), and the mean to torch at 256 (what truncating
  changes);
- Spearman: spherical k-means (pipelines.model.clustering.fit_centroids, k = ``--k``, seed 0)
  fitted on each run's embeddings, centroid_distance of every text, rank correlation with
  the distances of the torch-256 run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.corpora.python_docs import python_docs_records  # noqa: E402
from pipelines.model.clustering import assign, fit_centroids  # noqa: E402
from scorers.embedding import Embedding  # noqa: E402
from scorers.embedding_backends import available_backends  # noqa: E402


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def centroid_distance(emb: np.ndarray, k: int) -> np.ndarray:
    ids = [f"{i:08d}" for i in range(len(emb))]
    centroids, _ = fit_centroids(list(zip(ids, emb, strict=True)), k, seed=0)
    return assign(emb, centroids)[1]


def setup(backend: str, seq: int, texts: list[str]) -> dict:
    t0 = time.perf_counter()
    s = Embedding(device="cpu", backend=backend, max_seq_length=seq)
    s.score(texts[:32])
    return {"scorer": s, "setup_s": time.perf_counter() - t0, "seconds": []}


def timed_pass(r: dict, texts: list[str]) -> None:
    t0 = time.perf_counter()
    r["emb"] = r["scorer"].score(texts)["embedding"]
    r["seconds"].append(time.perf_counter() - t0)
    r["docs_s"] = len(texts) / min(r["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--k", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backends", default=",".join(available_backends()))
    ap.add_argument("--seqs", default="256,128")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument(
        "--fresh-cache", action="store_true", help="export into a new temporary cache dir"
    )
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.fresh_cache:
        os.environ["GRADUM_CACHE"] = tempfile.mkdtemp(prefix="gradum-cache-")
    texts = [r["text"] for r in python_docs_records(limit=a.docs)]
    print(
        f"# {platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}, "
        f"{len(texts)} python-docs paragraphs (mean {np.mean([len(t) for t in texts]):.0f} chars)"
    )
    print(f"# load average before: {os.getloadavg()}")
    backends = [b for b in a.backends.split(",") if b]
    seqs = [int(x) for x in a.seqs.split(",")]
    res: dict[tuple[str, int], dict] = {}
    for seq in seqs:
        for b in backends:
            res[b, seq] = setup(b, seq, texts)
    for rnd in range(a.rounds):
        for (b, seq), r in res.items():
            timed_pass(r, texts)
            print(
                f"  round {rnd}: {b:>9} @{seq}: {len(texts) / r['seconds'][-1]:.1f} docs/s "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    ref_key = ("torch", max(seqs))
    ref = res[ref_key]["emb"]
    ref_dist = centroid_distance(ref, a.k)
    base = res[ref_key]["docs_s"]
    rows = []
    print(
        f"{'backend':>9} {'seq':>4} {'docs/s':>7} {'x torch256':>10} {'cos same-seq':>12} "
        f"{'min cos':>8} {'cos vs 256':>10} {'spearman cd':>11} {'setup s':>8}"
    )
    for (b, seq), r in res.items():
        same = res["torch", seq]["emb"] if ("torch", seq) in res else ref
        cos = np.sum(r["emb"] * same, axis=1)
        cos256 = np.sum(r["emb"] * ref, axis=1)
        rho = 1.0 if (b, seq) == ref_key else spearman(centroid_distance(r["emb"], a.k), ref_dist)
        row = {
            "backend": b,
            "max_seq_length": seq,
            "docs_s": r["docs_s"],
            "speedup_vs_torch_256": r["docs_s"] / base,
            "mean_cos_same_seq": float(cos.mean()),
            "min_cos_same_seq": float(cos.min()),
            "mean_cos_vs_torch_256": float(cos256.mean()),
            "spearman_centroid_distance": rho,
            "setup_s": r["setup_s"],
        }
        rows.append(row)
        print(
            f"{b:>9} {seq:>4} {row['docs_s']:>7.1f} {row['speedup_vs_torch_256']:>9.2f}x "
            f"{row['mean_cos_same_seq']:>12.5f} {row['min_cos_same_seq']:>8.4f} "
            f"{row['mean_cos_vs_torch_256']:>10.4f} {rho:>11.4f} {row['setup_s']:>8.1f}"
        )
    print(f"# load average after: {os.getloadavg()}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
