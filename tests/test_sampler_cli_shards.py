import numpy as np
import pyarrow as pa
import pytest
import torch

from sampler import Sampler, pacing
from sampler import strategies as S

shards = pytest.importorskip("shards")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "out"
    n = 600
    rs = np.random.default_rng(0)
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": pa.array([f"text {i}" for i in range(n)], type=pa.large_string()),
            "difficulty": pa.array(rs.random(n).astype(np.float32)),
            "cluster": pa.array((np.arange(n) % 5).astype(np.int32)),
        }
    )
    shards.write_dataset(out, table, max_rows=128)
    return out


def test_sampler_over_shardset_and_path(dataset):
    ss = shards.ShardSet.open(dataset)
    a = Sampler(ss, S.Curriculum(pacing.linear(10, c0=0.2)), 16, device="cpu")
    b = Sampler(str(dataset), S.Curriculum(pacing.linear(10, c0=0.2)), 16, device="cpu")
    x, y = a.sample(), b.sample()
    assert torch.equal(x.indices, y.indices)
    d = ss.column("difficulty")
    assert d[x.indices.numpy()].max() <= np.quantile(d, 0.2) + 1e-6
    with pytest.raises(ValueError, match="nope"):
        Sampler(ss, S.UCB(group="nope"), 8, device="cpu")


def test_torch_adapters(dataset):
    from sampler.torch import BatchSampler, ShardDataset

    s = Sampler(dataset, S.UCB(reward="loss"), 8, device="cpu")
    ds = ShardDataset(dataset, columns=["id", "difficulty"])
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=BatchSampler(s, num_steps=3), collate_fn=lambda rows: rows
    )
    batches = list(loader)
    assert len(batches) == 3 and all(len(b) == 8 for b in batches)
    assert set(batches[0][0]) == {"id", "difficulty"}
    assert ds[5]["id"] == "r5"


def test_preview_cli(dataset, tmp_path, capsys):
    from sampler.cli import main

    png = tmp_path / "p.png"
    rc = main(
        [
            "preview",
            str(dataset),
            "--strategy",
            "curriculum",
            "--pacing",
            "root",
            "--steps",
            "40",
            "--batch-size",
            "16",
            "--png",
            str(png),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "mean difficulty served" in out and png.stat().st_size > 0
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert float(rows[0][1]) < float(rows[-1][1])  # easy first, then harder
    assert (
        main(["preview", str(dataset), "--strategy", "ucb", "--steps", "5", "--batch-size", "8"])
        == 0
    )
    assert main(["preview", str(tmp_path / "missing"), "--steps", "5"]) == 2
