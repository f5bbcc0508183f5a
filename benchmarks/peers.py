"""gradum against streaming-community (the maintained fork of MosaicML streaming) on the same
text, the same moto S3 server (a separate process, on loopback) and a random-order batch
workload: samples/s, bytes downloaded, and whether a resume from a saved state continues with
exactly the batches of an uninterrupted run.

streaming-community is not a gradum dependency: install it apart (``pip install --no-deps
--target DIR streaming-community xxhash zstd python-snappy cramjam brotli catalogue``) and put
DIR first on PYTHONPATH; its package imports torchvision at import time, which this machine's
torch has no build of, so ``--stub`` adds a two-class stand-in (never used for text).

    PYTHONPATH=.:DIR:STUB .venv/bin/python benchmarks/peers.py --rows 24000 --steps 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _serving_util import table  # noqa: E402
from serving import moto, upload  # noqa: E402

from sampler import Sampler  # noqa: E402
from sampler.strategies import Uniform  # noqa: E402
from shards import ShardSet, write_dataset  # noqa: E402


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def bench_gradum(args, work: Path) -> dict:
    ss = ShardSet.open("s3://bench/gradum", cache_dir=work / "g-cache")
    s = Sampler(ss, Uniform(), args.batch, seed=0, device="cpu", prefetch=args.prefetch)
    t0 = time.perf_counter()
    seen = []
    for k in range(args.steps):
        if k == args.steps // 2:
            state = s.state_dict()
        b = s.sample()
        ss.take(b.indices.numpy(), columns=["id", "text"])
        seen.append(b.indices.clone())
    dt = time.perf_counter() - t0
    r = Sampler(ss, Uniform(), args.batch, seed=0, device="cpu", prefetch=0)
    r.load_state_dict(state)
    exact = all((r.sample().indices == seen[k]).all() for k in range(args.steps // 2, args.steps))
    s.close()
    st = ss.stats()
    return {"sps": args.steps * args.batch / dt, "bytes": st["read"]["shards"], "exact": exact}


def bench_streaming(args, work: Path) -> dict:
    from streaming import StreamingDataLoader, StreamingDataset

    def loader(local: Path) -> StreamingDataLoader:
        ds = StreamingDataset(
            remote="s3://bench/mds",
            local=str(local),
            shuffle=True,
            shuffle_seed=0,
            batch_size=args.batch,
        )
        return StreamingDataLoader(ds, batch_size=args.batch, num_workers=0)

    dl = loader(work / "s-cache")
    t0 = time.perf_counter()
    seen, state = [], None
    for k, batch in enumerate(dl):
        seen.append(list(batch["id"]))
        if k + 1 == args.steps // 2:  # after batch k was yielded: resume at batch k + 1
            state = dl.state_dict()
        if k + 1 == args.steps:
            break
    dt = time.perf_counter() - t0
    fetched = dir_bytes(work / "s-cache")
    from streaming.base.util import clean_stale_shared_memory

    del dl
    clean_stale_shared_memory()
    dl2 = loader(work / "s-cache2")
    dl2.load_state_dict(state)
    again = []
    for batch in dl2:
        again.append(list(batch["id"]))
        if len(again) == args.steps - args.steps // 2:
            break
    exact = again == seen[args.steps // 2 :]
    return {"sps": args.steps * args.batch / dt, "bytes": fetched, "exact": exact}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=24_000)
    ap.add_argument("--text", type=int, default=1500)
    ap.add_argument("--shard-rows", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--prefetch", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import boto3

    work = Path(tempfile.mkdtemp(prefix="gradum-peers-"))
    port = 51000 + os.getpid() % 9000
    proc = moto(port)
    lines = []
    try:
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            S3_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="k",
            AWS_SECRET_ACCESS_KEY="s",
            AWS_REGION="us-east-1",
        )
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        t = table(args.rows, seed=0, text=args.text)
        write_dataset(work / "gradum", t, max_rows=args.shard_rows)
        upload(client, work / "gradum", "bench", "gradum")
        total = dir_bytes(work / "gradum" / "shards")
        rows = [("gradum", bench_gradum(args, work))]
        try:
            from streaming import MDSWriter

            limit = total // (args.rows // args.shard_rows)  # shards of about the same size
            with MDSWriter(
                out=str(work / "mds"), columns={"id": "str", "text": "str"}, size_limit=limit
            ) as w:
                ids, texts = t.column("id").to_pylist(), t.column("text").to_pylist()
                for i, text in zip(ids, texts, strict=True):
                    w.write({"id": i, "text": text})
            upload(client, work / "mds", "bench", "mds")
            rows.append(("streaming-community", bench_streaming(args, work)))
        except ImportError as e:
            lines.append(f"streaming-community not installed: {e}")
        lines.append(
            f"{args.rows:,} rows ({total / 1e6:.1f} MB of shards), batch {args.batch}, "
            f"{args.steps} batches in random order"
        )
        lines.append("")
        lines.append("| loader | samples/s | MB downloaded | resume exact |")
        lines.append("|---|---|---|---|")
        for name, r in rows:
            lines.append(
                f"| {name} | {r['sps']:.0f} | {r['bytes'] / 1e6:.1f} | "
                f"{'yes' if r['exact'] else 'no'} |"
            )
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
