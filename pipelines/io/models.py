"""Models a job names by a bucket path (the job's reference LM): a local copy per machine."""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

from pipelines.io import storage as fs


def local_model_path(model: str, job_token: str = "") -> str:
    """``model``, or for a model stored in a bucket (the job's reference LM) a copy in this
    machine's temporary directory, made once per job and machine."""
    if not fs.is_remote(model):
        return model
    key = hashlib.sha1(f"{model}\0{job_token}".encode()).hexdigest()[:16]
    local = os.path.join(tempfile.gettempdir(), "gradum-models", key)
    return fs.download_dir(model, local)


def local_model_params(params: dict[str, Any], job_token: str) -> dict[str, Any]:
    """``params`` with a model stored in a bucket replaced by a local copy."""
    model = params.get("model")
    if not isinstance(model, str):
        return params
    return dict(params, model=local_model_path(model, job_token))
