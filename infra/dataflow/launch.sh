#!/usr/bin/env bash
# Run the gradum flex template on Dataflow.
#   PROJECT=p REGION=us-central1 BUCKET=b INPUT='gs://b/data/*.jsonl.gz' \
#     OUTPUT=gs://b/gradum/run1 infra/dataflow/launch.sh
# GPU workers (embedding / LM on an NVIDIA L4 per worker; build with GPU=1 first):
#   GPU=1 EMBEDDING=default CLUSTERS=256 ... infra/dataflow/launch.sh
# Extra template parameters: EXTRA_PARAMS='lm=gpt2~difficulty=perplexity:2,readability:1'
# (also PROXY, CONFIG=gs://.../job.yaml, RESUME=true, OVERWRITE=true, see README.md)
# ('~'-separated, because values may hold commas).
set -euo pipefail

: "${PROJECT:?set PROJECT}"
: "${REGION:?set REGION}"
: "${BUCKET:?set BUCKET}"
: "${INPUT:?set INPUT (comma-separated files / globs / specs)}"
: "${OUTPUT:?set OUTPUT (a gs:// prefix)}"
case "${OUTPUT}" in gs://*) ;; *) echo "OUTPUT must be a gs:// prefix, not ${OUTPUT}" >&2; exit 2 ;; esac
GPU="${GPU:-0}"
SUFFIX=""; [ "${GPU}" = "1" ] && SUFFIX="-gpu"
REPO="${REPO:-gradum}"
TAG="${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}"
TEMPLATE="${TEMPLATE:-gs://${BUCKET}/templates/gradum-score${SUFFIX}.json}"
WORKER_IMAGE="${WORKER_IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/${REPO}/gradum-worker${SUFFIX}:${TAG}}"
JOB_NAME="${JOB_NAME:-gradum-score-$(date +%Y%m%d-%H%M%S)}"
MAX_WORKERS="${MAX_WORKERS:-10}"

# '^~^' makes '~' the separator of --parameters (values contain ',' and ';').
PARAMS="^~^input=${INPUT}~output=${OUTPUT}"
PARAMS+="~sdk_container_image=${WORKER_IMAGE}"
[ -n "${SIGNALS:-}" ] && PARAMS+="~signals=${SIGNALS}"
[ -n "${EMBEDDING:-}" ] && PARAMS+="~embedding=${EMBEDDING}"
[ -n "${CLUSTERS:-}" ] && PARAMS+="~clusters=${CLUSTERS}"
[ -n "${LM:-}" ] && PARAMS+="~lm=${LM}"
[ -n "${PROXY:-}" ] && PARAMS+="~proxy=${PROXY}"
[ -n "${CONFIG:-}" ] && PARAMS+="~config=${CONFIG}"
[ -n "${MAX_DEAD_LETTER_FRACTION:-}" ] && PARAMS+="~max_dead_letter_fraction=${MAX_DEAD_LETTER_FRACTION}"
[ "${OVERWRITE:-false}" = "true" ] && PARAMS+="~overwrite=true"
[ "${RESUME:-false}" = "true" ] && PARAMS+="~resume=true"
[ -n "${EXTRA_PARAMS:-}" ] && PARAMS+="~${EXTRA_PARAMS}"

ARGS=(
  --project "${PROJECT}"
  --region "${REGION}"
  --template-file-gcs-location "${TEMPLATE}"
  --temp-location "gs://${BUCKET}/tmp"
  --staging-location "gs://${BUCKET}/staging"
  --max-workers "${MAX_WORKERS}"
)
EXPERIMENTS="use_runner_v2"
if [ "${GPU}" = "1" ]; then
  # One L4 per worker, driver installed by Dataflow. One SDK process per worker so the
  # model is loaded once per GPU (RunInference keeps one model per process).
  PARAMS+="~dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
  EXPERIMENTS+=",no_use_multiple_sdk_containers"
  ARGS+=(
    --worker-machine-type "${MACHINE_TYPE:-g2-standard-4}"
    --disk-size-gb 50
  )
else
  ARGS+=(--worker-machine-type "${MACHINE_TYPE:-n2-standard-4}")
fi

set -x
gcloud dataflow flex-template run "${JOB_NAME}" "${ARGS[@]}" \
  --additional-experiments "${EXPERIMENTS}" --parameters "${PARAMS}"
