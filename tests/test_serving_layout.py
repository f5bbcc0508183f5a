"""Locality: ``gradum shards reorder`` and ``Curriculum(blocks=...)``; the lean build sorts and
the 1-bit coverage behind the memory targets."""

import json

import numpy as np
import pytest
import torch
from _serving_util import dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from gradum_cli.main import main as gradum
from sampler import Sampler, pacing
from sampler.coverage import Coverage
from sampler.sort import argsort_floats, argsort_labels
from sampler.strategies import Curriculum
from shards import ShardSet, validate


@pytest.fixture(scope="module")
def laid_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("lay")
    src = dataset(root / "src", n=5000, rows=300)
    (src / "dead_letter").mkdir()
    (src / "dead_letter" / "part-0.jsonl").write_text('{"reason": "x"}\n')
    m = json.loads((src / "manifest.json").read_text())
    m["counts"] = {"input": 5001, "written": 5000, "dead_letter": 1}
    (src / "manifest.json").write_text(json.dumps(m))
    assert (
        gradum(["shards", "reorder", str(src), str(root / "out"), "--rows-per-shard", "250"]) == 0
    )
    return src, root / "out"


def test_reorder_writes_a_valid_sorted_copy_with_the_same_accounting(laid_out, capsys):
    src, out = laid_out
    assert validate(out) == []
    a, b = ShardSet.open(src), ShardSet.open(out)
    assert (
        b.manifest["counts"]
        == a.manifest["counts"]
        == {
            "input": 5001,
            "written": 5000,
            "dead_letter": 1,
        }
    )
    assert b.manifest["layout"]["by"] == ["difficulty"]
    assert [int(s["rows"]) for s in b.manifest["shards"]] == [250] * 20
    d = b.column("difficulty")
    assert np.all(np.diff(d[~np.isnan(d)]) >= 0) and np.isnan(d[-1])
    assert sorted(b.column("id")) == sorted(a.column("id"))  # same rows
    assert (out / "dead_letter" / "part-0.jsonl").exists()
    order = argsort_floats(a.column("difficulty"))  # the sampler's own order = the layout
    assert b.column("id").tolist() == a.column("id")[order].tolist()
    assert gradum(["shards", "reorder", str(src), str(out)]) == 2  # refuses a non-empty target
    assert "not an empty directory" in capsys.readouterr().err


def test_reorder_by_cluster_groups_clusters(laid_out, tmp_path):
    src, _ = laid_out
    assert gradum(["shards", "reorder", str(src), str(tmp_path / "c"), "--by", "cluster"]) == 0
    c = ShardSet.open(tmp_path / "c").column("cluster")
    assert np.all(np.diff(c) >= 0)
    assert gradum(["shards", "reorder", str(src), str(tmp_path / "x"), "--by", "text"]) == 2


def test_curriculum_blocks_touch_few_shards_without_repeats_and_resume_exactly(laid_out):
    _, out = laid_out
    ss = ShardSet.open(out)
    pace = pacing.linear(40, c0=0.3)
    s = Sampler(ss, Curriculum(pace, blocks=3), 64, seed=2, device="cpu")
    plain = Sampler(ss, Curriculum(pace), 64, seed=2, device="cpu")
    touched, touched_plain, seen = [], [], []
    for t in range(60):
        if t == 25:
            saved = s.state_dict()
        b = s.sample()
        assert b.indices.unique().numel() == 64
        touched.append(len(ss.shards_of(b.indices.numpy())))
        touched_plain.append(len(ss.shards_of(plain.sample().indices.numpy())))
        seen.append(b.indices)
    assert max(touched) <= 4 and np.mean(touched_plain) > 2 * np.mean(touched)
    again = Sampler(ss, Curriculum(pace, blocks=3), 64, seed=2, device="cpu")
    again.load_state_dict(saved)
    for t in range(25, 60):
        assert torch.equal(again.sample().indices, seen[t])
    # eligibility: a round serves only its eligible prefix (positions = rows here)
    early = torch.cat(seen[:12])
    assert int(early.max()) < int(np.ceil(0.3 * 5000 + 0.7 * 5000 * 11 / 40)) + 1


def test_curriculum_blocks_serve_every_eligible_item_alike():
    """Blocks are chosen uniformly (chi-square over blocks), and inside the blocks chosen every
    item is served as often as the others."""
    n, G = 2000, 50
    d = np.arange(n, dtype=np.float32)  # the identity order: positions are ids
    strategy = Curriculum(pacing.linear(1, c0=1.0), blocks=4, block_rows=100)
    s = Sampler({"difficulty": d}, strategy, G, seed=0, device="cpu")
    ids = torch.cat([s.sample().indices for _ in range(3200)]).numpy()  # 400 rounds of 8
    counts = np.bincount(ids, minlength=n).reshape(20, 100)
    rounds = counts.sum(1) / 100  # a block chosen for a round serves about its 100 rows
    expected = 400 * 4 / 20
    assert ((rounds - expected) ** 2 / expected).sum() < 50  # chi-square, 19 dof: p ~ 2e-4
    ratio = counts / counts.mean(1, keepdims=True)
    assert ratio.min() > 0.8 and ratio.max() < 1.2


def _block_positions_per_step(seed, r, s, m, B, w, G):
    """The block draw as first written: everything recomputed at every step, block by block."""
    import math

    from sampler import rng
    from sampler.blocks import BLOCK_STREAM, _coprime

    nb = -(-m // B)
    wn = min(nb, max(w, -(-G // B) + 1))
    k = np.arange(wn, dtype=np.int64)
    lo, hi = (k * nb) // wn, ((k + 1) * nb) // wn
    blk = lo + ((rng.bits_np(seed, BLOCK_STREAM, r, k) * (hi - lo)) >> 32)
    size = np.minimum(B, m - blk * B)
    u = float(rng.uniform_np(rng.bits_np(seed, BLOCK_STREAM + 1, r, np.zeros(1, np.int64)))[0])
    A = np.floor(np.cumsum(size * (G / int(size.sum()))) + u)
    A[-1] = math.floor(G + u)
    c = np.minimum(np.diff(A, prepend=math.floor(u)).astype(np.int64), size)
    short = G - int(c.sum())
    if short:
        c[np.flatnonzero(size > c)[:short]] += 1
    a_bits = rng.bits_np(seed, BLOCK_STREAM + 2, r, k)
    d_bits = rng.bits_np(seed, BLOCK_STREAM + 3, r, k)
    out = []
    for q in range(wn):
        b, cq = int(size[q]), int(c[q])
        if cq:
            a = _coprime(int(a_bits[q]) % b or 1, b)
            x = (s * cq + np.arange(cq, dtype=np.int64)) % b
            out.append(blk[q] * B + (a * x + int(d_bits[q]) % b) % b)
    return np.concatenate(out)


@settings(max_examples=300, deadline=None)
@given(
    B=st.integers(1, 700),
    G=st.integers(1, 300),
    w=st.integers(1, 5),
    extra=st.integers(0, 20000),
    seed=st.integers(0, 2**40),
    r=st.integers(0, 10**6),
    data=st.data(),
)
def test_block_positions_kept_per_round_equal_the_per_step_draw(B, G, w, extra, seed, r, data):
    from sampler.blocks import block_positions, round_length

    m = G + extra
    s = data.draw(st.integers(0, round_length(w, B, G) - 1))
    for _ in range(2):  # computed, then from the round's kept arrays
        got = block_positions(seed, r, s, m, B, w, G)
        want = _block_positions_per_step(seed, r, s, m, B, w, G)
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_blocks_need_a_block_size():
    with pytest.raises(ValueError, match="block_rows"):
        Sampler(
            {"difficulty": np.zeros(100, np.float32)}, Curriculum(pacing.linear(5), blocks=2), 8
        )
    with pytest.raises(ValueError, match="blocks"):
        Curriculum(pacing.linear(5), blocks=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(width=32), st.sampled_from([0.0, -0.0, 0.5, float("nan")])),
        max_size=300,
    ),
    st.booleans(),
)
def test_the_lean_float_sort_is_a_stable_argsort_with_nan_last(values, descending):
    import sampler.sort as sort

    v = np.array(values, dtype=np.float32)
    key = np.where(np.isnan(v), np.inf, -v if descending else v).astype(np.float64)
    nan = np.isnan(v).astype(np.int8)
    sign = np.signbit(v) & (v == 0)  # -0.0 before +0.0 (before it after negation)
    want = np.lexsort((np.arange(v.size), sign if descending else ~sign, key, nan))
    old = sort.CHUNK
    try:
        sort.CHUNK = 16  # exercise the chunked passes and the long-run path
        got = argsort_floats(v, descending)
    finally:
        sort.CHUNK = old
    assert got.dtype == np.int32 and got.tolist() == want.tolist()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2**20), max_size=400))
def test_the_label_sort_is_stable(labels):
    lab = np.array(labels, dtype=np.int64)
    bits = max(1, int(lab.max()).bit_length()) if lab.size else 1
    assert argsort_labels(lab, bits).tolist() == np.argsort(lab, kind="stable").tolist()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 200), st.lists(st.integers(0, 10**6), max_size=100))
def test_coverage_bits_round_trip(n, marks):
    c = Coverage(n, torch.device("cpu"))
    idx = torch.tensor([m % n for m in marks], dtype=torch.int64)
    c.mark(idx)
    flags = np.zeros(n, dtype=np.uint8)
    flags[idx.numpy()] = 1
    assert c.count() == flags.sum() and c.to_bytes().tolist() == flags.tolist()
    c2 = Coverage(n, torch.device("cpu"))
    c2.load_bytes(torch.from_numpy(flags))
    assert torch.equal(c2.bits, c.bits) and c.nbytes == (n + 7) // 8
