"""Where a local job's wall time goes, stage by stage: runs ``python -m pipelines.score ARGS``
(its ``main``) in this process with the local runner's ``FnApiRunner._execute_bundle`` wrapped, then prints
each stage's start (seconds after launch) and length, longest first.

Usage: .venv/bin/python benchmarks/pipeline_stages.py FILE --output DIR
       --runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2 ...
       [--top 15]

(The 1e6 figures of issue 21 in benchmarks/README.md came from this and a per-process CPU
poll of /proc.)
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    argv = sys.argv[1:]
    top = 15
    if "--top" in argv:
        i = argv.index("--top")
        top = int(argv[i + 1])
        del argv[i : i + 2]
    rows: list[tuple[float, float, str]] = []
    real = fn_runner.FnApiRunner._execute_bundle
    t0 = time.perf_counter()

    def timed(self, ctx, manager, bundle_input):
        began = time.perf_counter()
        try:
            return real(self, ctx, manager, bundle_input)
        finally:
            rows.append((began - t0, time.perf_counter() - began, manager.stage.name))

    fn_runner.FnApiRunner._execute_bundle = timed
    from pipelines.score import main as score_main  # main(), not __main__: that ends the process

    try:
        rc = score_main(argv)
        if rc not in (0, None):
            raise SystemExit(rc)
    finally:
        total = time.perf_counter() - t0
        print(
            f"\n{len(rows)} stages, {sum(r[1] for r in rows):.1f} s in stages, {total:.1f} s in all"
        )
        for start, length, name in sorted(rows, key=lambda r: -r[1])[:top]:
            name = re.sub(r"ref_PCollection_PCollection_\d+/\w+|ref_AppliedPTransform_", "", name)
            steps = re.findall(r"\(([A-Za-z][\w/-]*?)(?:_\d+)?\)", name)
            parts = ("-".join(re.split(r"[-/]", s)[:2]) for s in steps)
            shown = ", ".join(dict.fromkeys(parts))[:110]
            print(f"{start:8.2f} s  {length:7.2f} s  {shown}")


if __name__ == "__main__":
    main()
