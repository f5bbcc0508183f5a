# Custom SDK container for the Dataflow workers: Beam's Python 3.11 SDK image + gradum.
# Build from the repository root (see build.sh):
#   docker build -f infra/dataflow/worker.Dockerfile -t IMAGE .
# Pass it to the job with --sdk_container_image=IMAGE (and use Runner v2).
#
# GPU workers: build with TORCH_INDEX=https://download.pytorch.org/whl/cu126 (CUDA wheels;
# use the CUDA index that publishes the pinned torch version)
# and launch with dataflow_service_options=
#   "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
# on a g2-standard-* machine type. The driver comes from Dataflow (install-nvidia-driver);
# the CUDA runtime comes from the torch wheel. faiss-gpu-cu12 (extra "gpu") makes k-means
# run on the GPU too; the default faiss-cpu works everywhere.
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG WITH_FAISS_GPU=0

WORKDIR /opt/gradum
COPY infra/dataflow/requirements.txt /opt/gradum/requirements.txt
COPY pyproject.toml README.md /opt/gradum/src/
COPY pipelines /opt/gradum/src/pipelines
COPY scorers /opt/gradum/src/scorers
COPY shards /opt/gradum/src/shards
COPY sampler /opt/gradum/src/sampler
COPY gradum_cli /opt/gradum/src/gradum_cli

RUN pip install --no-cache-dir --extra-index-url ${TORCH_INDEX} -r requirements.txt \
 && pip install --no-cache-dir --no-deps "/opt/gradum/src[pipeline]" \
 && if [ "${WITH_FAISS_GPU}" = "1" ]; then pip install --no-cache-dir "faiss-gpu-cu12>=1.8"; fi \
 && python -c "import pipelines.inference, scorers; scorers.get('embedding').dim"

# Optional GCS FUSE mount of the output bucket on every worker (see README.md, "Where the
# output goes"). Empty GCS_BUCKET: no mount, the entrypoint is Beam's own boot.
ARG GCS_BUCKET=""
ENV GRADUM_GCS_BUCKET=${GCS_BUCKET}
COPY infra/dataflow/entrypoint.sh /opt/gradum/entrypoint.sh
RUN if [ -n "${GCS_BUCKET}" ]; then \
      apt-get update && apt-get install -y --no-install-recommends curl gnupg lsb-release \
      && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
         | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
      && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main" \
         > /etc/apt/sources.list.d/gcsfuse.list \
      && apt-get update && apt-get install -y --no-install-recommends gcsfuse \
      && rm -rf /var/lib/apt/lists/*; \
    fi
ENTRYPOINT ["/opt/gradum/entrypoint.sh"]
