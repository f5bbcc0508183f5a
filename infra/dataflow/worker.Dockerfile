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
 && pip install --no-cache-dir --no-deps "/opt/gradum/src[pipeline,embed-fast]" \
 && if [ "${WITH_FAISS_GPU}" = "1" ]; then pip install --no-cache-dir "faiss-gpu-cu12>=1.8"; fi \
 && python -c "import pipelines.model.inference, scorers; scorers.get('embedding').dim"

# The entrypoint checks that gradum imports, then runs Beam's boot; it stops the worker on
# any set-up error. Output goes to gs:// through Beam's FileSystems: no mount is needed.
COPY infra/dataflow/entrypoint.sh /opt/gradum/entrypoint.sh
RUN chmod +x /opt/gradum/entrypoint.sh
ENTRYPOINT ["/opt/gradum/entrypoint.sh"]
