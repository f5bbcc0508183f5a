"""Spherical k-means on a seeded sample of embeddings (faiss), and assignment.

Fit: the ``sample_size`` records with the smallest sha1(seed, id) (a deterministic, uniform
sample that any runner reproduces, bounded by :mod:`pipelines.job.samples`), sorted by id, clustered by ``faiss.Kmeans`` with
``spherical=True`` (centroids renormalised each iteration; Dhillon & Modha 2001), on the
GPU when faiss-gpu and CUDA are present. Assignment: nearest centroid by cosine,
``centroid_distance = 1 - cos``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def sample_key(seed: int, record_id: str) -> str:
    return hashlib.sha1(f"{seed}\0{record_id}".encode()).hexdigest()


def fit_centroids(
    sample: list[tuple[str, np.ndarray]], k: int, *, seed: int = 0, niter: int = 25
) -> tuple[np.ndarray, dict[str, Any]]:
    """Centroids (k x d, unit rows) from ``(id, embedding)`` pairs, plus info for the manifest."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "clustering needs faiss: pip install 'gradum[pipeline]' (or gradum[gpu])"
        ) from exc
    if not sample:
        raise ValueError("--clusters needs at least one scored record with an embedding")
    sample = sorted(sample, key=lambda p: p[0])
    x = np.ascontiguousarray(np.stack([e for _, e in sample]).astype(np.float32))
    faiss.normalize_L2(x)
    k_used = min(k, len(x))
    use_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    faiss.omp_set_num_threads(1)  # results must not depend on the thread count
    km = faiss.Kmeans(
        x.shape[1],
        k_used,
        niter=niter,
        seed=seed,
        spherical=True,
        gpu=use_gpu,
        verbose=False,
        max_points_per_centroid=max(256, len(x) // k_used + 1),
    )
    km.train(x)
    centroids = km.centroids.astype(np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    info = {
        "k": int(k_used),
        "k_requested": int(k),
        "sample_size": len(x),
        "method": "faiss.Kmeans spherical",
        "niter": niter,
        "seed": seed,
        "device": "cuda" if use_gpu else "cpu",
        "objective": float(km.obj[-1]) if len(km.obj) else None,
    }
    return centroids, info


ASSIGN_BLOCK = 1024


def assign(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (int32) and cosine distance (float32) of each embedding.

    Rows go through the matrix product in zero-padded blocks of exactly 1,024, so each row
    meets the same BLAS kernel whatever batch it arrives in: a row's result does not depend
    on how the runner bundled the data (shards stay byte-identical across runners).
    """
    e = np.asarray(embeddings, dtype=np.float32)
    n = len(e)
    best = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float32)
    block = np.zeros((ASSIGN_BLOCK, centroids.shape[1]), dtype=np.float32)
    for lo in range(0, n, ASSIGN_BLOCK):
        rows = e[lo : lo + ASSIGN_BLOCK]
        block[: len(rows)] = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        block[len(rows) :] = 0.0
        sims = block @ centroids.T
        b = sims.argmax(axis=1)[: len(rows)]
        best[lo : lo + len(rows)] = b
        dist[lo : lo + len(rows)] = 1.0 - sims[np.arange(len(rows)), b]
    return best, np.maximum(dist, 0.0)


def fit_sample(sample: list, k: int, seed: int) -> dict:
    """Spherical k-means on the bounded sample ``[(key, id, embedding), ...]``."""
    centroids, info = fit_centroids([(i, e) for _, i, e in sample], k, seed=seed)
    return {"centroids": centroids, "info": info}
