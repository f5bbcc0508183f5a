"""gradum's public Beam transforms: score texts inside your own pipeline, write a dataset.

    import apache_beam as beam
    from pipelines import ScoreTexts, WriteShards

    with beam.Pipeline() as p:
        texts = p | beam.Create([{"id": "a", "text": "The cat sat."}, ...])
        scored = texts | ScoreTexts(signals=["length", "readability"])
        scored | WriteShards("out/", difficulty="readability", dead_letters=scored.dead_letter)

:class:`ScoreTexts` turns dicts with a text field into the same dicts with one float per
signal column added (and ``embedding``, a list of floats, when an embedding model runs); a
record that cannot be validated or scored goes to the tagged output ``dead_letter`` with its
reason. :class:`WriteShards` writes them as a gradum dataset: ranks, difficulty, buckets,
clusters, shards, the sampler's index, the manifest (written last) and the accounting
(``input == written + dead_letter``, with ``dead_letters`` counted as input).

``gradum score`` is made of the same pieces (:mod:`pipelines.job.graph`): it reads its inputs
part by part and scores each part where it is read (``ReadParts | ScoreBatches |
StageParts``); ``WriteShards`` first groups its input rows into parts by a hash of their id
(a shuffle), then shares ``StageParts | FinishShards`` with it.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, replace
from typing import Any

import apache_beam as beam
import numpy as np

from pipelines.config import JobConfig, JobError, check
from pipelines.io.records import make_record
from pipelines.job.dead_letters import dead_letter, record_dead_letter, write_part_dead_letters
from pipelines.model.signals import difficulty_weights, scorer_specs, signal_set

SOURCE = "pcollection"


def _config(**kwargs: Any) -> JobConfig:
    cfg = JobConfig(inputs=[], output=kwargs.pop("output", ""), **kwargs)
    check(cfg)
    return cfg


def _content_id(payload: dict) -> str:
    """The id of an element that has none: a hash of its content (identical elements are
    repeats)."""
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return "h-" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _to_record(element: Any, cfg: JobConfig):
    """A dict -> ``("ok", record)`` or ``("dead", dead letter)``."""
    if not isinstance(element, dict):
        return "dead", dead_letter("validate", f"element is a {type(element).__name__}, not a dict",
                                   SOURCE, 0, repr(element))  # fmt: skip
    payload = dict(element)
    if cfg.id_field is None and payload.get("id") in (None, ""):
        payload["id"] = _content_id(payload)
    record, reason = make_record(
        SOURCE, 0, payload, text_field=cfg.text_field, id_field=cfg.id_field,
        max_text_bytes=cfg.max_text_bytes,
    )  # fmt: skip
    if record is None:
        return "dead", dead_letter("validate", reason, SOURCE, 0, payload)
    return "ok", record


def _to_element(items: list[tuple[str, Any]]) -> dict:
    """A batch of validated items -> a batch element; the dead letters ride along."""
    return {
        "records": [v for kind, v in items if kind == "ok"],
        "dead": [v for kind, v in items if kind == "dead"],
    }


def _unbatch(batch: dict, text_field: str, columns: list[str]):
    """A scored batch element -> one dict per record (signals added), or its dead letter."""
    for d in batch.get("dead") or []:
        yield beam.pvalue.TaggedOutput("dead_letter", d)
    errors = batch.get("errors") or [None] * len(batch["records"])
    cols = batch.get("columns") or {}
    for i, (record, err) in enumerate(zip(batch["records"], errors, strict=True)):
        if err is not None:
            yield beam.pvalue.TaggedOutput("dead_letter", record_dead_letter("score", err, record))
            continue
        out = dict(record["meta"])
        out[text_field] = record["text"]
        out["id"] = record["id"]
        for c in columns:
            out[c] = float(cols[c][i])
        if "embedding" in cols:
            out["embedding"] = np.asarray(cols["embedding"][i], dtype=np.float32).tolist()
        yield out


class ScoreTexts(beam.PTransform):
    """Dicts with a text field -> the same dicts with the signal columns (main output) and
    ``dead_letter`` (tagged): ``{"stage", "reason", "source", "position", "payload"}``.

    ``signals``: CPU scorers (``scorers.available()``); ``lm``: a causal LM (a local path or a
    hub id, or None); ``embedding``: ``"default"`` (all-MiniLM-L6-v2, shipped in a package), a
    path, or None. An element's ``id`` (or ``id_field``) is kept; one without gets a hash of its
    content. Records are scored in batches of ``batch_size`` (Beam's ``BatchElements``); each
    model runs through RunInference, its model loaded once per worker process."""

    def __init__(
        self,
        signals: list[str] | None = None,
        *,
        lm: str | None = None,
        embedding: str | None = None,
        embedding_backend: str = "auto",
        text_field: str = "text",
        id_field: str | None = None,
        batch_size: int = 256,
        max_text_bytes: int = 1_000_000,
    ) -> None:
        super().__init__()
        kwargs: dict[str, Any] = dict(
            lm=lm or "none", embedding=embedding or "none", embedding_backend=embedding_backend,
            text_field=text_field, id_field=id_field, batch_size=batch_size,
            max_text_bytes=max_text_bytes,
        )  # fmt: skip
        if signals is not None:
            kwargs["signals"] = list(signals)
        self.cfg = _config(**kwargs)
        try:
            self.specs = scorer_specs(self.cfg)
            self.signals = signal_set(self.cfg, self.specs)
        except JobError as exc:
            raise ValueError(str(exc)) from None

    def expand(self, pcoll):
        from pipelines.job.graph import ScoreBatches, scoring_steps

        _refuse_runner(pcoll.pipeline)
        size = self.cfg.batch_size
        batches = (
            pcoll
            | "Validate" >> beam.Map(_to_record, self.cfg)
            | "Batch" >> beam.BatchElements(min_batch_size=size, max_batch_size=size)
            | "ToElements" >> beam.Map(_to_element)
        )
        scored = batches | "Score" >> ScoreBatches(scoring_steps(self.specs, {}, None, ""))
        columns = [c for c in self.signals.columns if c != "centroid_distance"]
        out = scored | "Unbatch" >> beam.FlatMap(
            _unbatch, self.cfg.text_field, columns
        ).with_outputs("dead_letter", main="scored")
        return out


def _refuse_runner(pipeline) -> None:
    """A runner gradum refuses (Beam's DaskRunner) fails the pipeline's construction."""
    from pipelines.job.runner import DASK_REFUSED, is_dask

    if is_dask(getattr(pipeline, "runner", None)):
        raise ValueError(DASK_REFUSED)


def _part_key(record_id: str, parts: int) -> str:
    return f"00000000-{zlib.crc32(record_id.encode('utf-8', 'surrogatepass')) % parts:06d}"


def _scoring_of(pcoll) -> ScoreTexts | None:
    """The ScoreTexts that produced ``pcoll``, found up its producer's composites."""
    applied = getattr(pcoll, "producer", None)
    while applied is not None:
        if isinstance(applied.transform, ScoreTexts):
            return applied.transform
        applied = applied.parent
    return None


def _split_input(pvalueish):
    """``(scored rows, dead letters or None)`` from what ``WriteShards`` was applied to: a
    PCollection, or ScoreTexts' outputs (its dead letters are then counted too)."""
    if isinstance(pvalueish, dict):
        return pvalueish["scored"], pvalueish.get("dead_letter")
    return pvalueish, None


def _keyed(element: dict, parts: int, text_field: str):
    rid = element.get("id")
    rid = str(rid) if rid not in (None, "") else _content_id(element)
    return _part_key(rid, parts), element


def _to_part(group, *, text_field: str, columns: list[str], _claimed=None) -> dict:
    """``(part key, scored dicts)`` -> one batch element of the part, as the scoring steps
    leave it: records sorted by id (their position), the signal columns, no errors."""
    key, rows = group
    rows = list(rows)
    for row in rows:
        if row.get("id") in (None, ""):
            row["id"] = _content_id(row)
    rows.sort(key=lambda r: str(r["id"]))
    skip = {text_field, "id", "embedding", *columns}
    records = [
        {"id": str(r["id"]), "text": r[text_field], "source": SOURCE, "position": i,
         "meta": {k: v for k, v in r.items() if k not in skip}}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    cols = {c: np.array([float(r.get(c, np.nan)) for r in rows], dtype=np.float64) for c in columns}
    if rows and "embedding" in rows[0]:
        cols["embedding"] = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
    return {"part": key, "seq": 0, "of": 1, "records": records, "columns": cols,
            "errors": [None] * len(rows), "dead": [], "n_input": len(rows)}  # fmt: skip


def _keyed_dead(d: dict, parts: int) -> tuple[str, dict]:
    return _part_key(json.dumps(d, sort_keys=True, default=str), parts), d


def _write_dead(group, out_dir: str, _claimed=None) -> list[dict]:
    key, items = group
    return write_part_dead_letters(out_dir, f"part-{key}-input", list(items))


def _claim(_, out: str, overwrite: bool, fingerprint: dict, run_id: str) -> str:
    """The output's checks and the run marker, at run time, before anything is staged."""
    from pipelines.output.preflight import prepare_output

    marker, _ = prepare_output(
        out, overwrite=overwrite, resume=False, fingerprint=fingerprint, run_id=run_id
    )
    return marker.run_id


class WriteShards(beam.PTransform):
    """Scored dicts -> a gradum dataset at ``output`` (shards, index, manifest, accounting).

    Apply it to :class:`ScoreTexts`' outputs (its signal set and dead letters are taken from
    there) or to a PCollection of dicts carrying the signal columns, with ``scoring=`` the
    ScoreTexts that made them. ``difficulty``: signals and weights (``"readability:2,chars"``;
    default every scalar signal); ``clusters``: k-means over the ``embedding`` field (needs
    ScoreTexts(embedding=...)); rows go to ``num_shards`` shards by a hash of their id (a
    repeated id is dead-lettered). The output is checked and claimed (``run.json``) when the
    pipeline runs, before anything is written; as with ``gradum score``, only what gradum
    wrote there is ever deleted, and a complete dataset is replaced only with ``overwrite``.
    """

    def __init__(
        self,
        output: str,
        *,
        scoring: ScoreTexts | None = None,
        difficulty: str | None = None,
        clusters: int = 0,
        buckets: int = 10,
        num_shards: int = 16,
        seed: int = 0,
        keep_embeddings: bool = False,
        overwrite: bool = False,
        max_dead_letter_fraction: float = 0.01,
    ) -> None:
        super().__init__()
        if num_shards < 1:
            raise ValueError("num_shards must be >= 1")
        self.output, self.scoring, self.num_shards = output, scoring, num_shards
        self.options = dict(
            difficulty=difficulty, clusters=clusters, buckets=buckets, seed=seed,
            keep_embeddings=keep_embeddings, overwrite=overwrite,
            max_dead_letter_fraction=max_dead_letter_fraction,
        )  # fmt: skip

    def __ror__(self, left, label=None):
        # Beam takes a DoOutputsTuple for values to Create: hand it ScoreTexts' two outputs.
        if isinstance(left, beam.pvalue.DoOutputsTuple):
            left = {"scored": left["scored"], "dead_letter": left["dead_letter"]}
        return super().__ror__(left, label)

    def expand(self, pvalueish):
        from pipelines.io import storage as fs
        from pipelines.job.graph import FinishShards, Layout, StageParts
        from pipelines.job.launch import config_fingerprint
        from pipelines.output.ownership import new_run_id
        from pipelines.plan.units import Sizing

        scored, dead = _split_input(pvalueish)
        _refuse_runner(scored.pipeline)
        scoring = self.scoring or _scoring_of(scored)
        if scoring is None:
            raise ValueError(
                "WriteShards needs the signal set: apply it to ScoreTexts' output or pass "
                "scoring=ScoreTexts(...)"
            )
        embedding = scoring.cfg.embedding
        if self.options["clusters"] > 0 and embedding == "none":
            raise ValueError("WriteShards(clusters=k) needs ScoreTexts(embedding=...)")
        cfg = replace(scoring.cfg, output=self.output, **self.options)
        try:
            sig = signal_set(cfg, scorer_specs(cfg))
            weights = difficulty_weights(cfg, sig.directions)
        except JobError as exc:
            raise ValueError(str(exc)) from None
        run_id = new_run_id()
        staging = fs.join(self.output, "staging", run_id)
        later = {"centroid_distance"}
        layout = Layout(
            out_dir=self.output, staging=staging, columns=sig.columns,
            directions=sig.directions, weights=weights, n_buckets=cfg.buckets, sizing=Sizing(),
            keep_embeddings=bool(sig.embedding_dim), sketch_error=cfg.sketch_error,
            clusters=cfg.clusters, kmeans_sample=max(256 * cfg.clusters, 20_000), seed=cfg.seed,
            dedupe_buckets=self.num_shards, rows_guessed=True, job_token=run_id,
            scored_columns=[c for c in sig.columns if c not in later],
        )  # fmt: skip
        pipeline = scored.pipeline
        fingerprint = {"options": config_fingerprint(cfg), "inputs": "pcollection"}
        claimed = (
            pipeline
            | "ClaimReady" >> beam.Create([None])
            | "Claim" >> beam.Map(_claim, self.output, cfg.overwrite, fingerprint, run_id)
        )
        gate = beam.pvalue.AsSingleton(claimed)
        parts = (
            scored
            | "KeyByPart" >> beam.Map(_keyed, self.num_shards, cfg.text_field)
            | "GroupIntoParts" >> beam.GroupByKey()
            | "ToParts"
            >> beam.Map(
                _to_part,
                text_field=cfg.text_field,
                columns=layout.scored_columns,
                _claimed=gate,
            )
        )
        staged = parts | "StageParts" >> StageParts(layout, claimed=claimed)
        extra_dead = None
        if dead is not None:
            extra_dead = (
                dead
                | "KeyDead"
                >> beam.Map(
                    lambda d: (
                        _part_key(
                            f"{d['source']}\0{d['position']}\0{d['reason']}", self.num_shards
                        ),
                        d,
                    )
                )
                | "GroupDead" >> beam.GroupByKey()
                | "WriteDead" >> beam.FlatMap(_write_dead, self.output, _claimed=gate)
            )
        commit_args = dict(
            max_dead_fraction=cfg.max_dead_letter_fraction,
            signals=sig.records,
            options=dict(asdict(cfg), difficulty_weights=weights, run_id=run_id),
            plan={"inputs": "a PCollection", "parts": self.num_shards},
            outputs={"files": [], "prefixes": []},
        )
        return staged | "FinishShards" >> FinishShards(layout, commit_args, extra_dead)
