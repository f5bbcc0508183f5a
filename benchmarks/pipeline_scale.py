"""How every cost of the scoring job grows with the corpus, from 1e4 to 1e6 records (3e6 if
asked), locally and against an S3 server (moto, on loopback), fitted and extrapolated to 1e9.

Usage: .venv/bin/python benchmarks/pipeline_scale.py [--sizes 10000,100000,1000000]
       [--stores local,s3] [--workers 2] [--compare-workers 2,8] [--rows-per-shard 5000]
       [--workdir DIR] [--out FILE.json] [--heap-defaults] [--stock-bundles]
       [--records-per-worker R]

Per run (the job as a subprocess: ``python -m pipelines.score``, five CPU signals,
multi-process DirectRunner): wall seconds; on S3, objects written, objects read, requests
by kind (from the server's own request log); the job graph's size in bytes (the pipeline
proto the launcher would submit, built in this process); the peak RSS (VmHWM) of the
launcher process and of every worker process. ``--rows-per-shard`` (default 5,000) makes
the shard count grow with the corpus. Each figure's growth exponent b in figure ~ n^b is
fitted by least squares on log-log; ``--compare-workers`` runs one size at two worker counts
(objects must agree within 10 %); ``--stock-bundles`` runs each local size a second time on
Beam's own local runner (one bundle per worker and stage) beside gradum's bounded bundles
(``pipelines/job/local_bundles.py``); ``--heap-defaults`` runs each local size a second time with
glibc's adaptive heap (``GRADUM_TUNE_HEAP=0``, see ``shards/heap.py``) beside gradum's fixed
limits; ``--records-per-worker R`` runs n records on n / R workers (the local runner hands
each worker one bundle of n / workers records per stage, so this holds a worker's bundle
constant, as a scaled-out Dataflow job does).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pipeline_cloud import CPU_SIGNALS, corpus  # noqa: E402  (the same graded JSONL)

_REQUEST = re.compile(r'"(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours 2xx-other statuses (206 ranges)


class Requests(logging.Handler):
    """moto's request log (werkzeug), parsed: method, key, query."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        m = _REQUEST.search(_ANSI.sub("", record.getMessage()))
        if m:
            path, _, query = m.group(2).partition("?")
            with self._lock:
                self.seen.append((m.group(1), path, query))

    def take(self) -> list[tuple[str, str, str]]:
        with self._lock:
            out, self.seen = self.seen, []
        return out


def classify(requests: list[tuple[str, str, str]], prefix: str) -> dict:
    """Objects written / read and requests by kind, under ``/bucket/prefix``."""
    kinds: Counter = Counter()
    written, read = set(), set()
    writes = reads = 0
    for method, path, query in requests:
        if method == "GET" and ("list-type" in query or path.rstrip("/").count("/") == 1):
            kinds["list"] += 1
            continue
        if not path.startswith(prefix):
            continue
        if method == "PUT" and "partNumber" not in query:
            kinds["put"] += 1
            written.add(path)
            writes += 1
        elif method == "PUT":
            kinds["upload part"] += 1
        elif method == "POST" and "uploadId" in query:
            kinds["complete upload"] += 1
            written.add(path)
            writes += 1
        elif method == "POST" and "uploads" in query:
            kinds["start upload"] += 1
        elif method == "POST" and "delete" in query:
            kinds["delete (batch)"] += 1
        elif method == "DELETE":
            kinds["delete"] += 1
        elif method == "GET":
            kinds["get"] += 1
            read.add(path)
            reads += 1
        elif method == "HEAD":
            kinds["head"] += 1
    return {
        "objects_written": len(written),
        "writes": writes,
        "objects_read": len(read),
        "reads": reads,
        "requests": sum(kinds.values()),
        "by_kind": dict(kinds),
    }


def _hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run(cmd: list[str], env: dict) -> dict:
    """Run the job; poll every process of its tree for its peak RSS."""
    import psutil

    began = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks: dict[int, tuple[int, str]] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = [root]
        for p in procs:
            kib = _hwm_kib(p.pid)
            if kib is None:
                continue
            try:
                name = " ".join(p.cmdline()[1:4])
            except psutil.Error:
                name = "?"
            if kib > peaks.get(p.pid, (0, ""))[0]:
                peaks[p.pid] = (kib, name)
        time.sleep(0.25)
    out, err = proc.communicate()
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"job failed ({proc.returncode}): {err.decode()[-2000:]}")
    launcher = peaks.get(proc.pid, (0, ""))[0]
    workers = [kib for pid, (kib, name) in peaks.items() if pid != proc.pid and "worker" in name]
    return {
        "wall_s": round(wall, 2),
        "launcher_peak_mib": round(launcher / 1024, 1),
        "worker_peak_mib": [round(k / 1024, 1) for k in sorted(workers)],
    }


def graph_bytes(inputs: list[str], rows_per_shard: int, beam_args: list[str]) -> int:
    """The size of the pipeline proto the launcher builds for this job (nothing runs)."""
    from pipelines.config import JobConfig
    from pipelines.job.launch import build_pipeline, claim_output, plan_job

    out = tempfile.mkdtemp(prefix="gradum-graph-")
    cfg = JobConfig(
        inputs=inputs, output=out, signals=CPU_SIGNALS.split(","), rows_per_shard=rows_per_shard,
        progress=False,
    )  # fmt: skip
    job = plan_job(cfg, beam_args)
    marker, resumed = claim_output(job)
    return len(build_pipeline(job, marker, resumed).to_runner_api().SerializeToString())


def growth(ns: list[int], values: list[float]) -> float | None:
    """b in value ~ n^b, least squares on log-log (None when a value is not positive)."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(ns, values, strict=True) if v and v > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / sxx, 3) if sxx else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--stores", default="local,s3")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compare-workers", default="2,8")
    ap.add_argument("--compare-size", type=int, default=100_000)
    ap.add_argument("--rows-per-shard", type=int, default=5_000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument(
        "--records-per-worker",
        type=int,
        default=0,
        help="scale the workers with the size (n / this, at least 2) instead of --workers",
    )
    ap.add_argument(
        "--heap-defaults",
        action="store_true",
        help="also run each local size with glibc's default heap (GRADUM_TUNE_HEAP=0)",
    )
    ap.add_argument(
        "--stock-bundles",
        action="store_true",
        help="also run each local size with Beam's one bundle per worker and stage "
        "(GRADUM_BOUNDED_BUNDLES=0, see pipelines/job/local_bundles.py)",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gradum-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    stores = args.stores.split(",")
    results: dict = {"runs": [], "machine": os.uname().nodename, "cpus": os.cpu_count()}
    recorder = Requests()
    server = None
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    s3_args: list[str] = []
    if "s3" in stores or args.compare_workers:
        import boto3
        from moto.server import ThreadedMotoServer
        from stores import free_port

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        werkzeug = logging.getLogger("werkzeug")
        werkzeug.setLevel(logging.INFO)
        werkzeug.addHandler(recorder)
        werkzeug.propagate = False
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k",
                              aws_secret_access_key="s", region_name="us-east-1")  # fmt: skip
        client.create_bucket(Bucket="gradum-bench")
        s3_args = [f"--s3_endpoint_url={endpoint}", "--s3_access_key_id=k",
                   "--s3_secret_access_key=s", "--s3_region_name=us-east-1"]  # fmt: skip
        env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")

    def job(
        n: int, store: str, workers: int, tag: str, heap: str = "tuned", bundles: str = "bounded"
    ) -> dict:
        src = corpus(n, work)
        if store == "s3":
            key = f"in/graded-{n}.jsonl"
            client.upload_file(str(src), "gradum-bench", key)
            inputs, out, extra = [f"s3://gradum-bench/{key}"], f"s3://gradum-bench/{tag}", s3_args
        else:
            inputs, out, extra = [str(src)], str(work / tag), []
        cmd = [sys.executable, "-m", "pipelines.score", *inputs, "--output", out,
               f"--signals={CPU_SIGNALS}", f"--rows-per-shard={args.rows_per_shard}",
               "--no-progress", "--overwrite", "--direct_running_mode=multi_processing",
               f"--direct_num_workers={workers}", *extra]  # fmt: skip
        recorder.take()
        row = {"n": n, "store": store, "workers": workers, "heap": heap, "bundles": bundles}
        overlay = {} if heap == "tuned" else {"GRADUM_TUNE_HEAP": "0"}
        if bundles != "bounded":
            overlay["GRADUM_BOUNDED_BUNDLES"] = "0"
        row.update(run(cmd, dict(env, **overlay)))
        if store == "s3":
            row.update(classify(recorder.take(), f"/gradum-bench/{tag}/"))
            manifest = json.loads(
                client.get_object(Bucket="gradum-bench", Key=f"{tag}/manifest.json")["Body"].read()
            )
        else:
            manifest = json.loads((work / tag / "manifest.json").read_text())
        row["shards"] = len(manifest["shards"])
        row["written"] = manifest["counts"]["written"]
        row["graph_bytes"] = graph_bytes(inputs, args.rows_per_shard, [*extra])
        print(json.dumps(row), flush=True)
        return row

    for store in stores:
        for n in sizes:
            workers = args.workers
            if args.records_per_worker:
                workers = max(2, round(n / args.records_per_worker))
            results["runs"].append(job(n, store, workers, f"{store}-{n}"))
            if args.heap_defaults and store == "local":
                results.setdefault("heap_defaults", []).append(
                    job(n, store, workers, f"{store}-{n}-glibc", heap="glibc defaults")
                )
            if args.stock_bundles and store == "local":
                results.setdefault("stock_bundles", []).append(
                    job(n, store, workers, f"{store}-{n}-stock", bundles="Beam's")
                )
    compare = []
    if args.compare_workers:
        for w in (int(x) for x in args.compare_workers.split(",")):
            compare.append(job(args.compare_size, "s3", w, f"s3-w{w}"))
    results["compare_workers"] = compare
    fits = {}
    for store in stores:
        rows = [r for r in results["runs"] if r["store"] == store]
        ns = [r["n"] for r in rows]
        metrics = ["wall_s", "launcher_peak_mib", "graph_bytes", "shards"]
        if store == "s3":
            metrics += ["objects_written", "objects_read", "requests"]
        fit = {m: growth(ns, [float(r[m]) for r in rows]) for m in metrics}
        peaks = [max(r["worker_peak_mib"] or [0]) for r in rows]
        fit["worker_peak_mib"] = growth(ns, peaks)
        # Beam's data-plane buffers fill up to their fixed sizes (10 MB flushes) by about 1e6
        # records; past that, a bounded step's peak must not move.
        big = [(n, p) for n, p in zip(ns, peaks, strict=True) if n >= 1_000_000]
        fit["worker_peak_mib_from_1e6"] = growth([n for n, _ in big], [p for _, p in big])
        fits[store] = fit
    for key, label in (("heap_defaults", "glibc defaults"), ("stock_bundles", "Beam's bundles")):
        rows = results.get(key) or []
        if rows:
            fits[f"local, {label}"] = {
                "worker_peak_mib": growth(
                    [r["n"] for r in rows], [max(r["worker_peak_mib"] or [0]) for r in rows]
                )
            }
    results["growth_exponents"] = fits
    print(json.dumps({"growth_exponents": fits, "compare_workers": compare}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main()
