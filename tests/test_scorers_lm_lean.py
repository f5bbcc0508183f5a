"""The lean lm forward (scorers.lm_forward): same values as the version-1 code path
(full float32 log-softmax, every hidden state), BOS excluded from the angle whoever adds
it, logged halving on a failing batch, and the chunked paths agree. Never downloads."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import scorers  # noqa: E402
from scorers.lm_forward import chunk_positions, gather_logprobs, resolve_layer  # noqa: E402
from scorers.reference_lm import SPECIAL, train_tokenizer  # noqa: E402

TEXTS = [
    "The import statement loads a module.",
    "x",
    "",
    "Numbers 123 456 and symbols #$%.",
    "日本語のテキスト",
    "😀 emoji 🎉",
    "lone \ud800 surrogate",
    "A somewhat longer sentence, with several clauses, that goes on for a while. " * 4,
]
CORPUS = [
    "the cat sat on the mat.",
    "a dog ran in the park!",
    "import os; print(os.getcwd())",
    "Numbers 123 456 and more text here.",
] * 5


def _save(model: object, tok: object, path: object) -> str:
    model.save_pretrained(path)  # type: ignore[attr-defined]
    tok.save_pretrained(path)  # type: ignore[attr-defined]
    return str(path)


@pytest.fixture(scope="module")
def bpe() -> object:
    return train_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def gpt2_lm(tmp_path_factory: pytest.TempPathFactory, bpe: object) -> str:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=len(bpe),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=bpe.bos_token_id,
        eos_token_id=bpe.eos_token_id,
    )
    return _save(transformers.GPT2LMHeadModel(cfg), bpe, tmp_path_factory.mktemp("gpt2"))


def _llama(bpe: object) -> object:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(bpe),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=bpe.bos_token_id,
        eos_token_id=bpe.eos_token_id,
        pad_token_id=bpe.pad_token_id,
    )
    return transformers.LlamaForCausalLM(cfg)


@pytest.fixture(scope="module")
def llama_lm(tmp_path_factory: pytest.TempPathFactory, bpe: object) -> str:
    return _save(_llama(bpe), bpe, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def llama_lm_tok_bos(tmp_path_factory: pytest.TempPathFactory, bpe: object) -> str:
    """The same Llama weights with a tokenizer that adds BOS itself (as Llama's does)."""
    tok = train_tokenizer(CORPUS, vocab_size=300)
    bos = tok.convert_tokens_to_ids(SPECIAL)
    tok.backend_tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single=f"{SPECIAL} $A", pair=f"{SPECIAL} $A $B", special_tokens=[(SPECIAL, bos)]
    )
    path = _save(_llama(bpe), tok, tmp_path_factory.mktemp("llama_tok_bos"))
    again = transformers.AutoTokenizer.from_pretrained(path)
    assert again("a")["input_ids"][0] == bos, "fixture: the tokenizer must add BOS itself"
    return path


def version1_scores(path: str, texts: list[str], layer: int = -1) -> np.ndarray:
    """The version-1 computation, one text at a time: full float32 log-softmax over the
    logits, every hidden state requested, BOS excluded only when the scorer prepended it
    (so a tokenizer-added BOS stays in the angle). Rows: (perplexity, confidence, angle)."""
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    bos = tok.bos_token_id
    tok_adds = tok("a")["input_ids"][:1] == [bos]
    rows = []
    for text in texts:
        ids = tok(text.replace("\ud800", "\ufffd"))["input_ids"]
        ids = ids[:128] if tok_adds else [bos] + ids[:127]
        x = torch.tensor([ids])
        with torch.no_grad():
            res = model(input_ids=x, output_hidden_states=True)
        logp = torch.log_softmax(res.logits[0, :-1].float(), dim=-1)
        lp = logp.gather(-1, x[0, 1:, None]).squeeze(-1)
        k = lp.numel()
        ppl = math.exp(-lp.mean().item()) if k else math.nan
        conf = lp.exp().mean().item() if k else math.nan
        h = res.hidden_states[layer][0].double()
        if not tok_adds:
            h = h[1:]
        n = h.shape[0]
        u = torch.nn.functional.normalize(h, dim=-1)
        cos = u @ u.T
        ang = ((cos.sum() - n) / (n * (n - 1))).item() if n >= 2 else math.nan
        rows.append((ppl, conf, ang))
    return np.array(rows)


def as_rows(out: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([out["perplexity"], out["confidence"], out["angle_concentration"]], 1)


def assert_rel(a: np.ndarray, b: np.ndarray, rel: float = 1e-4) -> None:
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(b)
    err = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-6)
    assert err.max() < rel, err.max()


@pytest.mark.parametrize("which", ["gpt2_lm", "llama_lm"])
@pytest.mark.parametrize("layer", [-1, 1, 0])
def test_equals_version1(which: str, layer: int, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(which)
    s = scorers.get("lm", model=path, device="cpu", max_tokens=128, token_budget=64, layer=layer)
    assert_rel(as_rows(s.score(TEXTS)), version1_scores(path, TEXTS, layer))


def test_small_chunks_and_model_logits_path(llama_lm: str) -> None:
    want = version1_scores(llama_lm, TEXTS)
    tiny = scorers.get("lm", model=llama_lm, device="cpu", max_tokens=128, chunk_elements=1)
    assert_rel(as_rows(tiny.score(TEXTS)), want)
    assert tiny._chunk == 1 and tiny._separable  # one position per chunk, head path
    logits = scorers.get("lm", model=llama_lm, device="cpu", max_tokens=128)
    logits._load()
    logits._separable = False  # as for a model with logit soft-capping
    assert_rel(as_rows(logits.score(TEXTS)), want)


def test_tokenizer_added_bos_is_excluded(llama_lm: str, llama_lm_tok_bos: str) -> None:
    prepend = scorers.get("lm", model=llama_lm, device="cpu", max_tokens=128)
    itself = scorers.get("lm", model=llama_lm_tok_bos, device="cpu", max_tokens=128)
    a, b = as_rows(prepend.score(TEXTS)), as_rows(itself.score(TEXTS))
    assert prepend.describe()["params"]["bos_prepended"] is True
    p = itself.describe()["params"]
    assert p["bos_prepended"] is False and p["tokenizer_adds_bos"] is True
    assert_rel(b, a, 1e-5)  # same ids, same model: the same three signals
    # version 1 kept the tokenizer's BOS in the angle: the values differ there
    v1 = version1_scores(llama_lm_tok_bos, TEXTS)
    assert_rel(b[:, :2], v1[:, :2])
    finite = ~np.isnan(v1[:, 2]) & ~np.isnan(b[:, 2])
    assert finite.sum() >= 5
    assert np.all(np.abs(b[finite, 2] - v1[finite, 2]) > 1e-6)
    assert np.isnan(b[1, 2]) and not np.isnan(v1[1, 2])  # "x": one own token, not two


def test_failing_batch_is_halved_with_a_warning(
    gpt2_lm: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = scorers.get("lm", model=gpt2_lm, device="cpu", max_tokens=128)
    want = as_rows(s.score(TEXTS))
    real = s._forward

    def oom_above_two(seqs: list[list[int]]) -> np.ndarray:
        if len(seqs) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 10.00 GiB")
        return real(seqs)

    s._forward = oom_above_two  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="scorers.lm"):
        got = as_rows(s.score(TEXTS))
    assert_rel(got, want, 1e-5)
    msgs = [r.getMessage() for r in caplog.records if r.name == "scorers.lm"]
    assert msgs and all("retrying in halves" in m and "out of memory" in m for m in msgs)

    def bad_text(seqs: list[list[int]]) -> np.ndarray:
        if any(len(x) == max(map(len, s.encode(TEXTS))) for x in seqs):
            raise ValueError("boom")
        return real(seqs)

    s._forward = bad_text  # type: ignore[method-assign]
    with pytest.raises(scorers.ScoringError) as err:
        s.score(TEXTS)
    assert err.value.position == len(TEXTS) - 1  # the longest text


def test_helpers() -> None:
    assert chunk_positions(32_000, 1 << 22) == 131
    assert chunk_positions(10**9, 1 << 22) == 1
    assert resolve_layer(-1, 4) == 4 and resolve_layer(0, 4) == 0 and resolve_layer(-5, 4) == 0
    with pytest.raises(ValueError):
        resolve_layer(5, 4)


def test_gather_logprobs_unshifted_sum_and_its_fallback() -> None:
    """log(sum(exp(z))) without the max shift where it is safe, logsumexp where it is not
    (a logit above the float32 exp range, all logits far below 0): both equal log-softmax."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(9, 50, generator=gen) * 4
    z[1, 7] = 200.0  # exp overflows
    z[2] -= 300.0  # exp underflows: the sum is 0
    z[3] = -30.0 + torch.randn(50, generator=gen)  # sum ~1e-12: below the unshifted range
    z[4, :] = 95.0  # every term overflows
    z[5, 3] = float("-inf")  # a masked logit
    targets = torch.randint(0, 50, (9,), generator=gen)
    targets[5] = 4
    want = torch.log_softmax(z.double(), -1).gather(-1, targets[:, None]).squeeze(-1)
    for chunk in (1, 4, 9):
        got = gather_logprobs(z, torch.arange(9), targets, lambda x: x, chunk)
        assert got.dtype == torch.float32 and z[1, 7] == 200.0  # the input is left as it was
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-5)
