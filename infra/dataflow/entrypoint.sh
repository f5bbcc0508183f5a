#!/bin/sh
# Worker entrypoint: check that gradum and its scorers import, then hand over to Beam's SDK
# harness boot with the arguments Dataflow passed. Any set-up error stops the worker with a
# message in the worker log, instead of a job that runs without gradum.
set -eu
if ! python -c "import pipelines.model.inference, pipelines.io.storage, scorers" >/tmp/gradum-check.log 2>&1; then
  echo "gradum: worker set-up failed: gradum does not import in this image:" >&2
  cat /tmp/gradum-check.log >&2
  exit 1
fi
exec /opt/apache/beam/boot "$@"
