#!/bin/sh
# Worker entrypoint: mount $GRADUM_GCS_BUCKET at /gcs/$GRADUM_GCS_BUCKET (GCS FUSE) when set,
# then hand over to Beam's SDK harness boot with the arguments Dataflow passed.
# The mount needs /dev/fuse and CAP_SYS_ADMIN in the container; see README.md.
set -e
if [ -n "${GRADUM_GCS_BUCKET}" ]; then
  mkdir -p "/gcs/${GRADUM_GCS_BUCKET}"
  if ! mountpoint -q "/gcs/${GRADUM_GCS_BUCKET}"; then
    gcsfuse --implicit-dirs "${GRADUM_GCS_BUCKET}" "/gcs/${GRADUM_GCS_BUCKET}" \
      || echo "gradum: gcsfuse mount of ${GRADUM_GCS_BUCKET} failed; output under /gcs will fail" >&2
  fi
fi
exec /opt/apache/beam/boot "$@"
