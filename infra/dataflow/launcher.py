"""Flex-template entry point: translate Dataflow template parameters, then run the job.

Dataflow passes template parameters as ``--name=value`` with the names of metadata.json
(letters, digits, underscores). The job's own options use hyphens and take the inputs
positionally, so this file maps:

- ``--input=A,B`` -> positional ``A B`` (comma-separated list of files / globs / specs);
- ``--max_dead_letter_fraction=X`` -> ``--max-dead-letter-fraction=X`` (every gradum option);
- ``--overwrite=true`` -> ``--overwrite`` (boolean options; ``false`` drops the flag).

``--output`` is a ``gs://`` prefix, passed as given: the job writes it through Beam's
``FileSystems`` (no mount), and ``--lm reference`` stores its model under it for the workers.

Everything else (``--runner``, ``--project``, ``--temp_location``, ``--sdk_container_image``,
``--dataflow_service_options``, ...) passes through to Beam untouched.
"""

from __future__ import annotations

import sys

# Template parameter name -> gradum option (None: positional inputs).
GRADUM_PARAMS: dict[str, str | None] = {
    "input": None,
    "output": "--output",
    "signals": "--signals",
    "text_field": "--text-field",
    "id_field": "--id-field",
    "lm": "--lm",
    "embedding": "--embedding",
    "embedding_backend": "--embedding-backend",
    "embedding_max_seq_length": "--embedding-max-seq-length",
    "clusters": "--clusters",
    "difficulty": "--difficulty",
    "buckets": "--buckets",
    "batch_size": "--batch-size",
    "max_text_bytes": "--max-text-bytes",
    "max_dead_letter_fraction": "--max-dead-letter-fraction",
    "rows_per_shard": "--rows-per-shard",
    "num_shards": "--num-shards",
    "seed": "--seed",
    "overwrite": "--overwrite",
    "keep_embeddings": "--keep-embeddings",
}
FLAGS = {"overwrite", "keep_embeddings"}


def translate(argv: list[str]) -> list[str]:
    """Template-style argv -> ``python -m pipelines.score`` argv."""
    inputs: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name not in GRADUM_PARAMS:
            out.append(arg)
            i += 1
            continue
        if not eq:
            if name in FLAGS:
                value = "true"
            else:
                i += 1
                value = argv[i] if i < len(argv) else ""
        i += 1
        if name == "input":
            inputs.extend(v.strip() for v in value.split(",") if v.strip())
        elif name in FLAGS:
            if value.strip().lower() in ("1", "true", "yes", "on"):
                out.append(GRADUM_PARAMS[name])
        elif value != "":
            out.append(f"{GRADUM_PARAMS[name]}={value}")
    if not any(a.startswith("--no-progress") for a in out):
        out.append("--no-progress")  # remote runs report Beam metrics counters instead
    return inputs + out


def main(argv: list[str] | None = None) -> int:
    from pipelines.score import main as score_main

    return score_main(translate(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
