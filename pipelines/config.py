"""The scoring job's own settings (Beam's options travel separately)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

DEFAULT_SIGNALS = "length,compression_ratio,lexical_diversity,readability,word_rarity"


@dataclass
class JobConfig:
    """Everything the job needs besides Beam's own options."""

    inputs: list[str]
    output: str
    signals: list[str] = field(default_factory=lambda: DEFAULT_SIGNALS.split(","))
    text_field: str = "text"
    id_field: str | None = None
    lm: str = "none"
    embedding: str = "none"
    embedding_backend: str = "auto"
    embedding_max_seq_length: int | None = None
    clusters: int = 0
    difficulty: str | None = None
    buckets: int = 10
    batch_size: int = 256
    max_text_bytes: int = 1_000_000
    max_dead_letter_fraction: float = 0.01
    rows_per_shard: int = 100_000
    num_shards: int = 0  # 0: planned from the input's size (rows_per_shard, shard_bytes)
    shard_bytes: int = 128 << 20  # about this many bytes of staged data per shard at most
    seed: int = 0
    overwrite: bool = False
    resume: bool = False  # continue the unfinished run at --output (its run marker)
    config: str | None = None  # the --config file the options came from (recorded)
    # files written into --output after the job (the demo's report): the run may delete them
    extra_outputs: tuple[str, ...] = ()
    progress: bool = True
    keep_embeddings: bool = False
    sketch_error: float = 0.005
    reference_lm_samples: int = 2000
    reference_lm_steps: int = 300
    proxy: str | None = None  # a signal scored on a sample only, predicted for every record
    proxy_fraction: float = 0.02

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> JobConfig:
        """Every field of the same name in ``args``; ``--signals`` split, ``--no-progress`` flipped."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        given["inputs"] = list(args.inputs)
        given["signals"] = [s for s in args.signals.split(",") if s.strip()]
        given["progress"] = not args.no_progress
        return cls(**given)


class JobError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def check(cfg: JobConfig) -> None:
    if (
        min(cfg.clusters, cfg.num_shards) < 0
        or min(cfg.buckets, cfg.rows_per_shard, cfg.batch_size, cfg.shard_bytes) < 1
    ):
        raise JobError(
            "--clusters and --num-shards must be >= 0; --buckets, --rows-per-shard, "
            "--batch-size >= 1"
        )
    if cfg.embedding_max_seq_length is not None and cfg.embedding_max_seq_length < 1:
        raise JobError("--embedding-max-seq-length must be >= 1")
    if not 0.0 <= cfg.max_dead_letter_fraction <= 1.0:
        raise JobError("--max-dead-letter-fraction must be in [0, 1]")
