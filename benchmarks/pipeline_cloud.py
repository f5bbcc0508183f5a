"""The job at cloud scale, side by side in one run: object stores, the launcher, shard opens.

Usage: .venv/bin/python benchmarks/pipeline_cloud.py [--n 1000000] [--shards 64]
       [--launcher-gb 2] [--workdir DIR] [--skip stores,launcher]

(a) stores: ``n`` records of ``builtin:graded`` (a JSONL file on the local disk, written
    untimed), the five CPU signals, 2 workers (multi-process DirectRunner), ``--num-shards``
    ``shards``; ``--output`` a local directory vs the S3 server (moto) vs the GCS emulator
    (gcp-storage-emulator), both on loopback. docs/s = n / wall time of the whole job process;
    ratio to the local run. The emulators are single-process Python servers: a floor for
    what a real store gives.
(b) opens: from the local run's manifest, staging pieces opened per shard (each shard's
    pieces, read once by the prepare step and once by the writer) and in all, against the
    design this replaced (one staging file per batch of 256, each opened by every shard).
(c) launcher: a ``launcher-gb`` GB JSONL; seconds and bytes of record data read by the
    launcher's plan (``pipelines.plan.inputs.plan_inputs``: units and size estimate) vs a baseline
    pass that counts the file's newlines (what the launcher did before this change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CPU_SIGNALS = "length,compression_ratio,lexical_diversity,readability,word_rarity"
TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def corpus(n: int, work: Path) -> Path:
    from pipelines.corpora import load_builtin

    path = work / f"graded-{n}.jsonl"
    if not path.exists():
        with open(path.with_suffix(".tmp"), "w") as fh:
            for r in load_builtin(f"builtin:graded?n={n}&task=language"):
                fh.write(json.dumps(r) + "\n")
        path.with_suffix(".tmp").rename(path)
    return path


def run_job(src: Path, out: str, shards: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "pipelines.score", str(src), "--output", out]
    cmd += [f"--signals={CPU_SIGNALS}", f"--num-shards={shards}", "--no-progress"]
    cmd += TWO_WORKERS + extra
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"job failed: {' '.join(cmd)}\n{run.stderr[-3000:]}")
    return wall


def stores(n: int, shards: int, work: Path) -> tuple[list[dict], dict]:
    from stores import gcs_server, s3_server

    src = corpus(n, work)
    rows = []
    local_out = work / "local-out"
    shutil.rmtree(local_out, ignore_errors=True)
    load = os.getloadavg()[0]
    wall = run_job(src, str(local_out), shards, [])
    manifest = json.loads((local_out / "manifest.json").read_text())
    rows.append({"store": "local disk", "wall": wall, "load": load})
    for name, server in (("S3 (moto server)", s3_server), ("GCS (emulator)", gcs_server)):
        with server() as store:
            load = os.getloadavg()[0]
            wall = run_job(src, store.url("out"), shards, store.beam_args)
            remote = json.loads(store.get("out/manifest.json"))
            same = [s["sha256"] for s in remote["shards"]] == [
                s["sha256"] for s in manifest["shards"]
            ]
            rows.append({"store": name, "wall": wall, "load": load, "identical": same})
    for r in rows:
        r["docs_s"] = n / r["wall"]
        r["ratio"] = r["docs_s"] / rows[0]["docs_s"]
    shutil.rmtree(local_out, ignore_errors=True)
    return rows, manifest


def opens(manifest: dict, n: int, batch: int = 256) -> dict:
    pieces = [s["staging_pieces"] for s in manifest["shards"]]
    shards = len(pieces)
    batches = -(-n // batch)
    return {
        "shards": shards,
        "pieces": sum(pieces),
        "per_shard_min": 2 * min(pieces),
        "per_shard_max": 2 * max(pieces),
        "total": 2 * sum(pieces),
        "old_per_shard": batches,
        "old_total": batches * shards,
    }


def launcher(gb: float, work: Path) -> dict:
    from pipelines.io import storage as fs
    from pipelines.plan.inputs import plan_inputs

    path = work / "big.jsonl"
    target = int(gb * (1 << 30))
    if not path.exists() or path.stat().st_size < target:
        block = corpus(100_000, work).read_bytes()
        with open(path, "wb") as fh:
            written = 0
            while written < target:
                fh.write(block)
                written += len(block)
    size = path.stat().st_size
    t0 = time.perf_counter()
    import apache_beam.io.filesystems  # noqa: F401 - a Beam program pays this import anyway

    import_s = time.perf_counter() - t0
    before = fs.BYTES_READ[0]
    t0 = time.perf_counter()
    plan = plan_inputs([str(path)])
    plan_s = time.perf_counter() - t0
    plan_bytes = fs.BYTES_READ[0] - before
    t0 = time.perf_counter()
    lines = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            lines += block.count(b"\n")
    scan_s = time.perf_counter() - t0
    return {
        "size": size,
        "import_s": import_s,
        "plan_s": plan_s,
        "plan_bytes": plan_bytes,
        "units": len(plan.units),
        "estimated_rows": plan.rows,
        "lines": lines,
        "scan_s": scan_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=64)
    ap.add_argument("--launcher-gb", type=float, default=2.0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip", default="", help="comma-separated: stores, launcher")
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    work = Path(a.workdir or tempfile.mkdtemp(prefix="gradum-bench-cloud-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, python {platform.python_version()}"
    )
    print(f"- command: {' '.join(sys.argv)}\n")
    if "stores" not in skip:
        rows, manifest = stores(a.n, a.shards, work)
        print(f"### (a) {a.n:,} records, 2 workers, {a.shards} shards: where --output is\n")
        print("| output | wall s | docs/s | ratio to local | shards identical to local | load |")
        print("|---|---:|---:|---:|---|---:|")
        for r in rows:
            same = "yes" if r.get("identical", True) else "NO"
            print(
                f"| {r['store']} | {r['wall']:.1f} | {r['docs_s']:,.0f} | {r['ratio']:.2f}x "
                f"| {same} | {r['load']:.1f} |"
            )
        o = opens(manifest, a.n)
        print(f"\n### (b) staging pieces opened to build {o['shards']} shards\n")
        print("| design | opens per shard | opens in all |")
        print("|---|---:|---:|")
        print(
            f"| partitioned by shard (this one; {o['pieces']:,} pieces, each read by prepare "
            f"and write) | {o['per_shard_min']:,}-{o['per_shard_max']:,} | {o['total']:,} |"
        )
        print(
            f"| one file per batch of 256, every shard opens every file (before) "
            f"| {o['old_per_shard']:,} | {o['old_total']:,} |"
        )
    if "launcher" not in skip:
        r = launcher(a.launcher_gb, work)
        print(
            f"\n### (c) the launcher on a {r['size'] / 1e9:.2f} GB JSONL ({r['lines']:,} lines)\n"
        )
        print("| launcher work | seconds | bytes of the file read |")
        print("|---|---:|---:|")
        print(
            f"| plan from metadata (this one: {r['units']} units, "
            f"{r['estimated_rows']:,} rows estimated) | {r['plan_s']:.3f} | {r['plan_bytes']:,} |"
        )
        print(f"| count the newlines (before) | {r['scan_s']:.1f} | {r['size']:,} |")
        print(f"\n(importing Beam's FileSystems first, once per launcher: {r['import_s']:.1f} s)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
