"""Read a part: a read unit -> batches of validated records, its dead letters and its count.

Records travel as batches from here on (Beam's per-element cost is paid per batch). A part is
read whole, then its valid records are batched in order of text length when model scorers run
(padding waste falls; the staged rows are put back in input order), else in input order.
Every batch carries the part key, its sequence number and the part's batch count, so the
staging step knows when it has the whole part; the first batch also carries the part's dead
letters and how many input records it held.

With ``--resume``, a part whose summary (``staging/<run>/done/part-<key>.pkl``) the killed run
wrote is not read again: its summary travels instead (:mod:`pipelines.job.stage`).
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.console.progress import PROGRESS
from pipelines.io.records import make_record
from pipelines.job.dead_letters import dead_letter
from pipelines.job.failfast import BUDGET
from pipelines.job.summary import load_summary

_LOG = logging.getLogger("gradum.read")


class ReadPart(beam.DoFn):
    """A read unit -> batch elements (see the module docstring)."""

    def __init__(
        self,
        *,
        text_field: str,
        id_field: str | None,
        max_text_bytes: int,
        batch_size: int,
        sort_by_length: bool,
        staging: str,
        resume: bool,
        budget: tuple[str, float, int, bool],
        progress_dir: str | None = None,
    ) -> None:
        self.text_field, self.id_field, self.max_text_bytes = text_field, id_field, max_text_bytes
        self.batch_size, self.sort_by_length = batch_size, sort_by_length
        self.staging, self.resume, self.budget = staging, resume, budget
        self.progress_dir = progress_dir  # see pipelines.console.progress
        self.read = Metrics.counter("gradum", "read")
        self.dead = Metrics.counter("gradum", "input_dead_letter")
        self.reused = Metrics.counter("gradum", "reused_parts")

    def setup(self) -> None:
        BUDGET.configure(*self.budget)

    def process(self, unit: tuple):
        from pipelines.io.formats import read_unit

        PROGRESS.configure(self.progress_dir)
        key = unit[1]
        if self.resume:
            summary = load_summary(self.staging, key)
            if summary is not None:
                self.reused.inc()
                PROGRESS.add(read=summary["n_input"], reused=summary["n_input"])
                PROGRESS.flush()
                yield {"part": key, "seq": 0, "of": 1, "records": [], "reused": summary}
                return
        records, dead, n = [], [], 0
        for item in read_unit(unit):
            n += 1
            if item[0] == "dead":
                _, source, position, reason, payload = item
                dead.append(dead_letter("read", reason, source, position, payload))
                continue
            _, source, position, payload = item
            record, reason = make_record(
                source,
                position,
                payload,
                text_field=self.text_field,
                id_field=self.id_field,
                max_text_bytes=self.max_text_bytes,
            )
            if record is None:
                dead.append(dead_letter("validate", reason, source, position, payload))
            else:
                records.append(record)
        self.read.inc(n)
        self.dead.inc(len(dead))
        PROGRESS.add(read=n, dead=len(dead))
        PROGRESS.flush()
        BUDGET.add(read=n, dead=len(dead))
        if self.sort_by_length:
            records.sort(key=lambda r: len(r["text"]))
        size = self.batch_size
        batches = [records[i : i + size] for i in range(0, len(records), size)] or [[]]
        for seq, batch in enumerate(batches):
            element = {"part": key, "seq": seq, "of": len(batches), "records": batch}
            if seq == 0:
                element["dead"], element["n_input"] = dead, n
            yield element
