"""CPU scorers: definitions against independent computations, edge cases, registry."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scorers
from scorers import ScoringError
from scorers.mtld import mtld

BAD_TEXTS = [
    "",
    "   \n\t  ",
    "word",
    "日本語のテキストです。これは文です。",
    "Привет мир. Как дела?",
    "😀🎉🚀 emoji 😀",
    "ctrl\x00\x01\x07\x1b chars\x7f.",
    "lone \ud800 surrogate \udfff here.",
    "a" * 1000 + ". " + "The cat sat. " * 100,
]
CPU = ["length", "compression_ratio", "lexical_diversity", "readability", "word_rarity"]


def test_registry_and_describe() -> None:
    assert scorers.available() == sorted(
        [
            "length",
            "compression_ratio",
            "lexical_diversity",
            "readability",
            "word_rarity",
            "lm",
            "embedding",
        ]
    )
    with pytest.raises(KeyError, match="unknown scorer"):
        scorers.get("nope")
    for name in CPU:
        s = scorers.get(name)
        d = s.describe()
        assert d["name"] == s.name == name
        assert d["version"] == s.version
        assert set(d["outputs"]) == set(s.outputs)
        assert all(v in (-1, 0, 1) for v in s.outputs.values())
        assert isinstance(d["params"], dict)
    assert scorers.get("compression_ratio", level=9).describe()["params"]["level"] == 9


def test_import_is_light() -> None:
    code = (
        "import sys, scorers; s = scorers.get('readability'); s.score(['a b.']);"
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers', 'apache_beam',"
        " 'pipelines', 'shards', 'sampler') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", CPU)
def test_bad_inputs_never_crash(name: str) -> None:
    s = scorers.get(name)
    out = s.score(BAD_TEXTS)
    assert set(out) == set(s.outputs)
    for col in out.values():
        assert col.dtype == np.float32 and col.shape == (len(BAD_TEXTS),)
    if name in ("lexical_diversity", "readability", "word_rarity"):
        col = out[name]
        assert np.isnan(col[0]) and np.isnan(col[1])  # no words
        assert np.isfinite(col[2:]).all()
    if name == "compression_ratio":
        assert np.isnan(out[name][0]) and np.isfinite(out[name][1:]).all()
    if name == "length":
        assert out["chars"][0] == 0 and out["words"][0] == 0 and out["words"][2] == 1


def test_huge_text() -> None:
    text = ("The quick brown fox jumps over the lazy dog. " * 230_000)[:10_000_000]
    for name in CPU:
        out = scorers.get(name).score([text])
        assert all(np.isfinite(v).all() for v in out.values()), name


def test_scoring_error_names_position() -> None:
    for name in CPU:
        with pytest.raises(ScoringError) as err:
            scorers.get(name).score(["fine", "also fine", None])  # type: ignore[list-item]
        assert err.value.position == 2
        assert "position 2" in str(err.value)


def test_empty_batch() -> None:
    for name in CPU:
        out = scorers.get(name).score([])
        assert all(v.shape == (0,) for v in out.values())


# -- compression ------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=400), st.integers(min_value=1, max_value=9))
def test_compression_matches_zlib(text: str, level: int) -> None:
    got = scorers.get("compression_ratio", level=level).score([text])["compression_ratio"][0]
    b = text.encode("utf-8")
    assert got == np.float32(len(b) / len(zlib.compress(b, level)))


def test_compression_surrogates_and_direction() -> None:
    s = scorers.get("compression_ratio")
    t = "x\ud800y"
    b = t.encode("utf-8", "surrogatepass")
    assert s.score([t])["compression_ratio"][0] == np.float32(len(b) / len(zlib.compress(b, 6)))
    r = s.score(["abc " * 500, " ".join(str(i * 7919 % 10007) for i in range(500))])
    assert r["compression_ratio"][0] > r["compression_ratio"][1]


# -- MTLD ---------------------------------------------------------------------------------
def ref_mtld(tokens: list[str], threshold: float = 0.72) -> float:
    """Straightforward MTLD: recompute the segment TTR from scratch at every word."""

    def factors(seq: list[str]) -> float:
        f, seg = 0.0, []
        for w in seq:
            seg.append(w)
            if len(set(seg)) / len(seg) <= threshold:
                f += 1
                seg = []
        if seg:
            f += (1 - len(set(seg)) / len(seg)) / (1 - threshold)
        return f if f > 0 else 1.0

    n = len(tokens)
    return (n / factors(tokens) + n / factors(tokens[::-1])) / 2


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list("abcdefghij")), min_size=1, max_size=300))
def test_mtld_matches_reference(tokens: list[str]) -> None:
    assert mtld(tokens) == pytest.approx(ref_mtld(tokens), rel=1e-12)
    text = " ".join(t.upper() for t in tokens)  # lower-casing is part of the definition
    got = scorers.get("lexical_diversity").score([text])["lexical_diversity"][0]
    assert got == np.float32(ref_mtld(tokens))


def test_mtld_known_values() -> None:
    assert mtld(["a"]) == 1.0  # no factor: MTLD = n_words
    assert mtld(["a", "b", "c"]) == 3.0
    # "a a a a": TTR 1, .5 -> factor at 2nd word, twice: 2 factors, MTLD 2
    assert mtld(["a"] * 4) == 2.0
    assert math.isnan(mtld([]))


# -- Flesch -------------------------------------------------------------------------------
def ref_syllables(word: str) -> int:
    n, prev = 0, False
    for ch in word:
        v = ch in "aeiouy"
        if v and not prev:
            n += 1
        prev = v
    if n > 1 and word[-1] == "e" and word[-2:] != "le":
        n -= 1
    return max(n, 1)


def ref_flesch(text: str) -> float:
    toks = re.findall(r"\w+", text.lower())
    if not toks:
        return math.nan
    sentences, has_word, i = 0, False, 0
    while i < len(text):
        ch = text[i]
        if ch in ".!?":
            j = i
            while j < len(text) and text[j] in ".!?":
                j += 1
            if j == len(text) or text[j].isspace():
                sentences += has_word
                has_word = False
            i = j
            continue
        if re.match(r"\w", ch):
            has_word = True
        i += 1
    sentences = max(sentences + has_word, 1)
    syl = sum(ref_syllables(w) for w in toks)
    return 206.835 - 1.015 * len(toks) / sentences - 84.6 * syl / len(toks)


WORDS = [
    "the",
    "cat",
    "sat",
    "table",
    "make",
    "rhythm",
    "beautiful",
    "3.14",
    "naïve",
    "über",
    "cake",
    "le",
    "queue",
    "readability",
    "zzz",
    "日本",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(WORDS), st.sampled_from(["", "", " ", ".", "!?", ","])),
        min_size=0,
        max_size=60,
    )
)
def test_flesch_matches_reference(parts: list[tuple[str, str]]) -> None:
    text = " ".join(w + p for w, p in parts)
    got = scorers.get("readability").score([text])["readability"][0]
    want = ref_flesch(text)
    if math.isnan(want):
        assert np.isnan(got)
    else:
        assert got == np.float32(want)


def test_flesch_known_values() -> None:
    s = scorers.get("readability")
    got = s.score(["The cat sat on the mat.", "cat"])["readability"]
    # 6 words, 1 sentence, 6 syllables
    assert got[0] == pytest.approx(206.835 - 1.015 * 6 - 84.6, abs=1e-4)
    assert got[1] == pytest.approx(206.835 - 1.015 - 84.6, abs=1e-4)


# -- word rarity --------------------------------------------------------------------------
def test_word_rarity_formula_and_fit() -> None:
    s = scorers.get("word_rarity", table={"a": 3, "b": 1}, source="test")
    got = s.score(["A b c", "🙂"])["word_rarity"]
    want = -(math.log(4 / 7) + math.log(2 / 7) + math.log(1 / 7)) / 3
    assert got[0] == pytest.approx(want, rel=1e-6)
    assert np.isnan(got[1])
    assert s.describe()["params"]["source"] == "test"
    fitted = scorers.rarity.WordRarity.fit(["the cat", "the dog"], source="toy")
    r = fitted.score(["the", "cat", "zebra"])["word_rarity"]
    assert r[0] < r[1] < r[2]


def test_word_rarity_default_table() -> None:
    s = scorers.get("word_rarity")
    p = s.describe()["params"]
    assert "pydoc_data" in p["source"] and p["table_size"] > 1000 and len(p["table_sha256"]) == 64
    r = s.score(["the function returns the value", "perspicacious lugubrious sesquipedalian"])
    assert r["word_rarity"][0] < r["word_rarity"][1]


def test_length() -> None:
    r = scorers.get("length").score(["héllo wörld!", "a\ud800"])
    assert r["chars"].tolist() == [12.0, 2.0] and r["words"].tolist() == [2.0, 1.0]
