"""Stage a part: its scored batches -> one staging object, its dead letters, its summary.

The batches of a part arrive in the bundle that read it (reading and scoring are one fused
stage, so record text never crosses a shuffle). Once all ``of`` batches are in, the part's
rows go into ``staging/<run>/parts/part-<key>.arrow`` (input order), its read, validation and
scoring failures into ``dead_letter/part-<key>.jsonl``, and its summary
(:mod:`pipelines.job.summary`) last. One object of each kind per part: the object count
grows with the parts, not with workers x shards. The summary's pieces go on to the rest of
the job as tagged outputs; a part reused by ``--resume`` sends its saved summary the same way.
"""

from __future__ import annotations

import hashlib
import logging
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines.console.progress import PROGRESS
from pipelines.io import storage as fs
from pipelines.io.records import unicode_problem
from pipelines.io.staged import meta_kinds, meta_values, staged_table, value_kinds, write_ipc_file
from pipelines.job import rank_guide, samples
from pipelines.job.dead_letters import record_dead_letter, write_part_dead_letters
from pipelines.job.failfast import BUDGET
from pipelines.job.summary import (
    kmeans_rows,
    proxy_rows,
    save_summary,
    staging_path,
    summary_path,
)
from pipelines.job.worker_fn import freeze_setup_objects, in_sdk_worker_process
from pipelines.model.inference import scorer_cpu_line
from pipelines.stats import ranks
from shards.heap import cap_mmap_threshold, trim_heap

_LOG = logging.getLogger("gradum.stage")
TAGS = ("columns", "ids", "kmeans", "proxy", "proxy_count", "meta", "runtime", "guide")


class StagePart(beam.DoFn):
    """Scored batch elements -> part infos (main) and the summary's pieces (tagged):
    ``columns`` ``{"key", "staging", "summary"}`` (where the part's signal columns are),
    ``ids`` ``(bucket, (key, offsets, data, rows))``, ``kmeans`` / ``proxy`` lists of sample
    rows, ``proxy_count`` ints, ``meta`` field kinds, ``guide`` the part's offer to the rank
    guide (:mod:`pipelines.job.rank_guide`)."""

    def __init__(
        self,
        *,
        out_dir: str,
        staging: str,
        columns: list[str],
        dedupe_buckets: int,
        kmeans: tuple[int, int, int, bool] | None,
        proxy: tuple[str, list[str], int, int, int, bool] | None,
        guide: tuple[int, bool] | None = None,
        job: str = "",
        progress_dir: str | None = None,
        models: bool = True,
    ) -> None:
        self.models = models  # a model scorer runs in this stage: glibc's heap left adaptive
        self.guide = guide  # (total rows, guessed) or None
        self.job = job  # per-process state (the running sample thresholds) is per job
        self.out_dir, self.staging, self.columns = out_dir, staging, list(columns)
        self.dedupe_buckets = dedupe_buckets  # 0: ids are unique by construction
        self.kmeans = kmeans  # (seed, k, total rows, guessed) or None
        self.proxy = proxy  # (target, features, seed, k, total rows, guessed) or None
        self.progress_dir = progress_dir
        self.scored = Metrics.counter("gradum", "scored")
        self.staged = Metrics.counter("gradum", "staged_parts")

    def start_bundle(self) -> None:
        freeze_setup_objects()  # after every DoFn of this stage is set up, scorers included
        if not self.models and in_sdk_worker_process():
            cap_mmap_threshold()  # no torch here to slow down (shards.heap)
        self._parts: dict[str, dict[int, dict]] = {}

    def process(self, element: dict, claimed=None):  # claimed: a gate (see StageParts)
        PROGRESS.configure(self.progress_dir)
        if element.get("reused") is not None:
            yield from self._emit(element["reused"], None)
            return
        errors = element.get("errors") or [None] * len(element["records"])
        failed = sum(e is not None for e in errors)
        self.scored.inc(len(errors) - failed)
        PROGRESS.add(scored=len(errors) - failed, dead=failed)
        BUDGET.add(dead=failed)
        batches = self._parts.setdefault(element["part"], {})
        batches[element["seq"]] = element
        if len(batches) == element["of"]:
            del self._parts[element["part"]]
            PROGRESS.flush()  # a part's counts are final: the bar's sum is exact once all are
            yield from self._finish(element["part"], [batches[i] for i in range(len(batches))])
            # Scoring keeps glibc's adaptive heap (torch is slower under fixed limits), which
            # holds on to the pages of the data plane's freed 10-26 MiB flush buffers: give
            # them back once per part (about 0.5 ms; benchmarks/README.md, seventh session).
            trim_heap()

    def finish_bundle(self) -> None:
        if self._parts:
            raise RuntimeError(
                f"parts {sorted(self._parts)[:3]} ended a bundle incomplete: the runner split "
                "the fused read-score-stage step; nothing was lost, but the job cannot go on"
            )

    def _finish(self, key: str, batches: list[dict]):
        began = time.monotonic()
        first = batches[0]
        dead = list(first.get("dead") or [])
        records, parts = [], {c: [] for c in self.columns}
        embeddings = []
        for b in batches:
            errors = b.get("errors") or [None] * len(b["records"])
            ok = [i for i, e in enumerate(errors) if e is None]
            for i, e in enumerate(errors):
                if e is not None:
                    dead.append(record_dead_letter("score", e, b["records"][i]))
            if not ok:
                continue
            records.extend(b["records"][i] for i in ok)
            for c in self.columns:
                parts[c].append(np.asarray(b["columns"][c], dtype=np.float64)[ok])
            if "embedding" in b.get("columns", {}):
                embeddings.append(np.asarray(b["columns"]["embedding"], dtype=np.float32)[ok])
        columns = {c: np.concatenate(v) if v else np.empty(0) for c, v in parts.items()}
        if embeddings:
            columns["embedding"] = np.concatenate(embeddings)
        table, kinds = self._table(records, columns, dead)
        data = write_ipc_file(table)
        path = staging_path(self.staging, key)
        fs.write_bytes(path, memoryview(data), durable=False)  # checked by sha256
        dead_files = write_part_dead_letters(self.out_dir, f"part-{key}", dead) if dead else []
        summary = self._summarise(key, table, kinds)
        runtime = next((b["runtime"] for b in batches if b.get("runtime")), {})
        summary.update(
            runtime=runtime,
            staging={"path": path, "bytes": data.size, "sha256": _sha256(data)},
            n_input=int(first.get("n_input", 0)),
            dead=dead_files,
            n_dead=len(dead),
        )
        save_summary(self.staging, summary)
        self.staged.inc()
        _LOG.info(
            "part %s: %d read, %d staged, %d dead-lettered in %.1f s; %s",
            key,
            summary["n_input"],
            table.num_rows,
            len(dead),
            time.monotonic() - began,
            scorer_cpu_line(),
        )
        yield from self._emit(summary, table)

    def _table(self, records: list, columns: dict, dead: list):
        """The staged table and the metadata kinds; a record Arrow cannot store (a lone
        surrogate a reader let through) is dead-lettered and the table built without it."""
        values = meta_values(records)
        kinds = {f: value_kinds(v) for f, v in values.items()}
        try:
            return staged_table(records, columns, self.columns, kinds, values), kinds
        except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError):
            bad = {i: why for i, r in enumerate(records) if (why := unicode_problem(r))}
            if not bad:
                raise
        for i, why in bad.items():
            dead.append(record_dead_letter("validate", why, records[i]))
        keep = [i for i in range(len(records)) if i not in bad]
        records = [records[i] for i in keep]
        columns = {c: np.asarray(v)[keep] for c, v in columns.items()}
        kinds = meta_kinds(records)
        return staged_table(records, columns, self.columns, kinds), kinds

    def _summarise(self, key: str, table, kinds: dict) -> dict:
        summary = {
            "key": key,
            "rows": table.num_rows,
            "columns": {c: table[c].to_numpy() for c in self.columns},
            "meta_kinds": {k: sorted(v) for k, v in kinds.items()},
            "ids": table["id"].combine_chunks() if self.dedupe_buckets else None,
            "kmeans": None,
            "proxy": None,
            "proxy_count": 0,
        }
        if self.guide is not None:
            total, guessed = self.guide
            cap = samples.part_cap(ranks.GUIDE_KEYS, table.num_rows, total, guessed)
            summary["guide"] = rank_guide.part_offer(key, summary["columns"], cap)
        if self.kmeans is not None:
            seed, k, total, guessed = self.kmeans
            cap = samples.part_cap(k, table.num_rows, total, guessed)
            summary["kmeans"] = kmeans_rows(table, seed, cap)
        if self.proxy is not None:
            target, features, seed, k, total, guessed = self.proxy
            cap = samples.part_cap(k, table.num_rows, total, guessed)
            summary["proxy"], summary["proxy_count"] = proxy_rows(
                table, target, features, seed, cap
            )
        return summary

    def _emit(self, summary: dict, table):
        key = summary["key"]
        yield {
            "key": key,
            "staging": summary["staging"],
            "rows": summary["rows"],
            "n_input": summary["n_input"],
            "n_dead": summary["n_dead"],
            "dead": summary["dead"],
            "reused": table is None,
        }
        yield beam.pvalue.TaggedOutput(  # where the columns are, not the columns: O(1) per part
            "columns",
            {"key": key, "staging": summary["staging"], "summary": summary_path(self.staging, key)},
        )
        yield beam.pvalue.TaggedOutput("meta", summary["meta_kinds"])
        if summary.get("guide") is not None:  # none asked for, or a summary from before guides
            yield beam.pvalue.TaggedOutput("guide", summary["guide"])
        for name, how in (summary.get("runtime") or {}).items():  # what this part's worker used
            yield beam.pvalue.TaggedOutput(
                "runtime", (name, tuple(sorted(how.items())), summary["rows"])
            )
        if self.dedupe_buckets and summary["rows"]:
            yield from _id_buckets(key, summary["ids"], self.dedupe_buckets)
        if self.kmeans is not None:
            rows = samples.RUNNING.admit((self.job, "kmeans"), self.kmeans[1], summary["kmeans"])
            yield beam.pvalue.TaggedOutput("kmeans", rows)
        if self.proxy is not None:
            rows = samples.RUNNING.admit((self.job, "proxy"), self.proxy[3], summary["proxy"])
            yield beam.pvalue.TaggedOutput("proxy", rows)
            yield beam.pvalue.TaggedOutput("proxy_count", summary["proxy_count"])


def _sha256(data) -> str:
    return hashlib.sha256(memoryview(data)).hexdigest()


def _id_buckets(key: str, ids, buckets: int):
    """``(bucket, (key, offsets, data, rows))`` per dedupe bucket this part's ids fall in
    (:func:`pipelines.job.dedupe.pack_ids`): raw bytes that Beam's coder copies as they are, a
    few dozen bytes per piece beyond its ids (a pickled Arrow array costs some 300)."""
    import zlib

    from pipelines.job.dedupe import pack_ids

    values = ids.to_pylist()
    bucket = np.fromiter(
        (zlib.crc32(v.encode("utf-8")) % buckets for v in values), dtype=np.int64, count=len(values)
    )
    order = np.argsort(bucket, kind="stable")
    cuts = np.flatnonzero(np.diff(bucket[order])) + 1
    for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(order)].tolist(), strict=True):
        rows = order[lo:hi]
        yield beam.pvalue.TaggedOutput(
            "ids", (int(bucket[rows[0]]), (key, *pack_ids(ids.take(pa.array(rows)), rows)))
        )
