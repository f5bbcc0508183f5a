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

The launcher always adds ``--no-progress`` and ``--verbose``: the workers are remote (no bar),
and the launcher VM's stdout and stderr are the only log Dataflow keeps (a log file there is
lost with the VM). :data:`NOT_PARAMETERS` lists the ``gradum score`` options that are not
template parameters, and why (``tests/test_infra.py`` checks that every option is one or the
other).
"""

from __future__ import annotations

import sys

# Template parameter name -> gradum option (None: positional inputs).
GRADUM_PARAMS: dict[str, str | None] = {
    "input": None,
    "output": "--output",
    "config": "--config",
    "signals": "--signals",
    "text_field": "--text-field",
    "id_field": "--id-field",
    "lm": "--lm",
    "reference_lm_steps": "--reference-lm-steps",
    "reference_lm_samples": "--reference-lm-samples",
    "embedding": "--embedding",
    "embedding_backend": "--embedding-backend",
    "embedding_max_seq_length": "--embedding-max-seq-length",
    "clusters": "--clusters",
    "difficulty": "--difficulty",
    "proxy": "--proxy",
    "proxy_fraction": "--proxy-fraction",
    "buckets": "--buckets",
    "batch_size": "--batch-size",
    "max_text_bytes": "--max-text-bytes",
    "max_dead_letter_fraction": "--max-dead-letter-fraction",
    "rows_per_shard": "--rows-per-shard",
    "num_shards": "--num-shards",
    "seed": "--seed",
    "overwrite": "--overwrite",
    "resume": "--resume",
    "keep_embeddings": "--keep-embeddings",
}
FLAGS = {"overwrite", "resume", "keep_embeddings"}
# Options the launcher always passes.
ALWAYS = ("--no-progress", "--verbose")
# gradum score options that are not template parameters, and why.
NOT_PARAMETERS: dict[str, str] = {
    "--dry-run": "prints the plan and submits no job: run it locally with the same options",
    "--no-progress": "always passed: the workers are remote, their counters show in Dataflow",
    "--verbose": "always passed: the launcher VM's output is the log Dataflow keeps",
    "--log-file": "a file on the launcher VM is lost with it (see --verbose)",
    "--project": "Dataflow gives the job its project",
    "--s3_endpoint_url": "S3 connection options belong in the config file (not on the job page)",
    "--s3_access_key_id": "a key: put it in the config file, never in a template parameter",
    "--s3_secret_access_key": "a key: put it in the config file, never in a template parameter",
    "--s3_region_name": "S3 connection options belong in the config file (not on the job page)",
}


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
    out += [flag for flag in ALWAYS if flag not in out]
    return inputs + out


def main(argv: list[str] | None = None) -> int:
    from pipelines.score import main as score_main

    return score_main(translate(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
