#!/usr/bin/env bash
# Build the launcher + worker images with Cloud Build, then the flex-template spec.
#   PROJECT=my-proj REGION=us-central1 BUCKET=my-bucket infra/dataflow/build.sh
# GPU worker image:  GPU=1 ... infra/dataflow/build.sh
set -euo pipefail

: "${PROJECT:?set PROJECT}"
: "${REGION:?set REGION}"
: "${BUCKET:?set BUCKET (gs:// bucket name, without gs://)}"
REPO="${REPO:-gradum}"                       # Artifact Registry docker repository
TAG="${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}"
GPU="${GPU:-0}"
REGISTRY="${REGION}-docker.pkg.dev/${PROJECT}/${REPO}"
SUFFIX=""; [ "${GPU}" = "1" ] && SUFFIX="-gpu"
LAUNCHER_IMAGE="${LAUNCHER_IMAGE:-${REGISTRY}/gradum-launcher:${TAG}}"
WORKER_IMAGE="${WORKER_IMAGE:-${REGISTRY}/gradum-worker${SUFFIX}:${TAG}}"
TORCH_INDEX="https://download.pytorch.org/whl/cpu"
[ "${GPU}" = "1" ] && TORCH_INDEX="${TORCH_INDEX_GPU:-https://download.pytorch.org/whl/cu126}"
TEMPLATE="gs://${BUCKET}/templates/gradum-score${SUFFIX}.json"

cd "$(git rev-parse --show-toplevel 2>/dev/null || dirname "$0")/"
[ -f pyproject.toml ] || cd "$(dirname "$0")/../.."

gcloud artifacts repositories describe "${REPO}" --project "${PROJECT}" --location "${REGION}" \
  >/dev/null 2>&1 || gcloud artifacts repositories create "${REPO}" --project "${PROJECT}" \
  --location "${REGION}" --repository-format docker

gcloud builds submit . --project "${PROJECT}" --region "${REGION}" \
  --config infra/dataflow/cloudbuild.yaml \
  --substitutions "_LAUNCHER_IMAGE=${LAUNCHER_IMAGE},_WORKER_IMAGE=${WORKER_IMAGE},_TORCH_INDEX=${TORCH_INDEX},_WITH_FAISS_GPU=${GPU}"

gcloud dataflow flex-template build "${TEMPLATE}" --project "${PROJECT}" \
  --image "${LAUNCHER_IMAGE}" \
  --sdk-language PYTHON \
  --metadata-file infra/dataflow/metadata.json \
  --additional-experiments use_runner_v2 \
  --additional-user-labels app=gradum

echo "template:      ${TEMPLATE}"
echo "worker image:  ${WORKER_IMAGE}"
echo "launch with:   TEMPLATE=${TEMPLATE} WORKER_IMAGE=${WORKER_IMAGE} infra/dataflow/launch.sh ..."
