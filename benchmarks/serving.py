"""Serving from a bucket: batches/s, bytes fetched per batch, stalls and shards touched per batch,
for Uniform, Curriculum, Curriculum(blocks), UCB and Prioritized, on two layouts (as the job
writes it: rows in input order, hashed over shards; and ``gradum shards reorder --by
difficulty``), from a moto S3 server (a separate process, on loopback) with caches of 10 %,
50 % and 100 % of the dataset, against local serving of the same files.

Each run: build the Sampler (index only), then ``--warmup`` steps, then ``--steps`` timed
steps of draw + ``take`` of the batch's rows + ``update`` (a random loss). Prefetch: the
sampler's planner, ``--prefetch`` batches ahead.

    .venv/bin/python benchmarks/serving.py --rows 60000 --steps 200 --out /tmp/serving.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _serving_util import table  # noqa: E402

from sampler import Sampler, pacing  # noqa: E402
from sampler.strategies import UCB, Curriculum, Prioritized, Uniform  # noqa: E402
from shards import ShardSet, write_dataset  # noqa: E402
from shards.reorder import reorder  # noqa: E402


def moto(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):  # a loaded machine may need a minute
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def upload(client, local: Path, bucket: str, prefix: str) -> None:
    for root, _, names in os.walk(local):
        for name in names:
            full = Path(root) / name
            key = f"{prefix}/{full.relative_to(local).as_posix()}"
            client.upload_file(str(full), bucket, key)


def strategies(steps: int, blocks: int) -> dict:
    T = max(1, steps // 2)
    return {
        "Uniform": lambda: Uniform(),
        "Curriculum": lambda: Curriculum(pacing.root(T, c0=0.1)),
        f"Curriculum(blocks={blocks})": lambda: Curriculum(pacing.root(T, c0=0.1), blocks=blocks),
        "UCB": lambda: UCB(group="cluster", reward="loss"),
        "Prioritized": lambda: Prioritized(),
    }


def run(ss: ShardSet, make, args, prefetch: int) -> dict:
    s = Sampler(ss, make(), args.batch, seed=0, device="cpu", prefetch=prefetch)
    rs = np.random.default_rng(0)
    touched = []
    before = None
    t0 = 0.0
    for k in range(args.warmup + args.steps):
        if k == args.warmup:
            before, t0 = ss.stats(), time.perf_counter()
        b = s.sample()
        ids = b.indices.numpy()
        ss.take(ids)
        touched.append(len(ss.shards_of(ids)))
        s.update(b.indices, loss=torch.from_numpy(rs.random(ids.size)))
    dt = time.perf_counter() - t0
    after = ss.stats()
    s.close()
    out = {"bps": args.steps / dt, "touched": float(np.mean(touched[args.warmup :]))}
    if after.get("remote"):
        out["bytes"] = (after["bytes_downloaded"] - before["bytes_downloaded"]) / args.steps
        out["stalls"] = (after["stalls"] - before["stalls"]) / args.steps
        out["stall_s"] = after["stall_seconds"] - before["stall_seconds"]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--text", type=int, default=1500, help="mean text bytes per row")
    ap.add_argument("--shard-rows", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--prefetch", type=int, default=16)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--caches", default="0.1,0.5,1.0")
    ap.add_argument("--only", default="", help="comma-separated strategy names to run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import boto3

    work = Path(tempfile.mkdtemp(prefix="gradum-serving-"))
    port = 50000 + os.getpid() % 10000
    proc = moto(port)
    lines = []
    try:
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="k",
            AWS_SECRET_ACCESS_KEY="s",
            AWS_REGION="us-east-1",
        )
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        t = table(args.rows, seed=0, text=args.text, clusters=64)
        write_dataset(work / "hashed", t, max_rows=args.shard_rows)
        reorder(ShardSet.open(work / "hashed"), str(work / "sorted"), ["difficulty"])
        layouts = {"hashed": work / "hashed", "by difficulty": work / "sorted"}
        for name, path in layouts.items():
            upload(client, path, "bench", name.replace(" ", "-"))
        total = sum(int(s["bytes"]) for s in ShardSet.open(work / "hashed").manifest["shards"])
        probe = ShardSet.open("s3://bench/hashed", cache_dir=work / "probe")
        Sampler(probe, Curriculum(pacing.root(10)), args.batch, device="cpu", prefetch=0)
        Sampler(probe, UCB(group="cluster"), args.batch, device="cpu", prefetch=0)
        built = probe.stats()["read"]
        lines.append(
            f"dataset: {args.rows:,} rows, {total / 1e6:.1f} MB in "
            f"{probe.num_shards} shards; building a Curriculum and a UCB sampler from the "
            f"bucket read {built['manifest'] + built['index']:,} B "
            f"({100 * (built['manifest'] + built['index']) / total:.2f} % of the shards' "
            f"bytes; shards read: {built['shards']} B)"
        )
        lines.append("")
        lines.append(
            "| strategy | layout | serving | batches/s | vs local | MB fetched / batch "
            "| stalls / batch | shards touched / batch |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        only = {x.strip() for x in args.only.split(",") if x.strip()}
        for sname, make in strategies(args.steps + args.warmup, args.blocks).items():
            if only and sname not in only:
                continue
            for lname, path in layouts.items():
                if "blocks" in sname and lname == "hashed":
                    continue
                local = run(ShardSet.open(path), make, args, 0)
                row = f"| {sname} | {lname} | local | {local['bps']:.0f} | 1.00 | 0 | 0 | "
                lines.append(row + f"{local['touched']:.1f} |")
                print(lines[-1], flush=True)
                for frac in [float(x) for x in args.caches.split(",")]:
                    cache = work / f"c-{sname}-{lname}-{frac}"
                    ss = ShardSet.open(
                        f"s3://bench/{lname.replace(' ', '-')}",
                        cache_dir=cache,
                        cache_limit=int(frac * total),
                    )
                    r = run(ss, make, args, args.prefetch)
                    ss.close()
                    lines.append(
                        f"| {sname} | {lname} | S3, cache {frac:.0%} | {r['bps']:.1f} | "
                        f"{r['bps'] / local['bps']:.2f} | {r['bytes'] / 1e6:.2f} | "
                        f"{r['stalls']:.2f} | {r['touched']:.1f} |"
                    )
                    print(lines[-1], flush=True)
                    shutil.rmtree(cache, ignore_errors=True)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
