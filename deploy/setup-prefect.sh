#!/usr/bin/env bash
# One-time Prefect set-up for medseg on the server named by PREFECT_API_URL (run from anywhere):
#   * work pool "medseg-process" (type process) for the deployments' worker,
#   * tag concurrency limit "gpu" = 1 (one training task at a time: train tasks carry the tag `gpu`),
#   * the deployments of deploy/prefect.yaml (nightly-retrain, bulk-ingest, batch-infer).
#
#   PREFECT_API_URL=http://prefect:4200/api MEDSEG_CONFIG=/etc/medseg/site.yaml bash deploy/setup-prefect.sh
#
# MEDSEG_CONFIG (default deploy/medseg.yaml) becomes the deployments' `config_path` parameter; it
# must be readable by the worker at that path. Idempotent: re-running updates the deployments.
# The `prefect` program: $PREFECT if set, else the checkout's .venv/bin/prefect (deploy/install.sh),
# else the one on PATH (the container images install medseg into the system Python).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PREFECT:-}" ] && [ -x "$REPO/.venv/bin/prefect" ]; then
  PREFECT="$REPO/.venv/bin/prefect"
fi
PREFECT="$(command -v "${PREFECT:-prefect}" || true)"  # a path, or a name on PATH; empty when not executable
if [ -z "$PREFECT" ]; then
  echo "error: no prefect program: not in $REPO/.venv/bin nor on PATH; install medseg, or set PREFECT=/path/to/prefect" >&2
  exit 2
fi
POOL="${MEDSEG_POOL:-medseg-process}"
GPU_SLOTS="${MEDSEG_GPU_SLOTS:-1}"
CONFIG="${MEDSEG_CONFIG:-$REPO/deploy/medseg.yaml}"
DEPLOYMENTS="${MEDSEG_DEPLOYMENTS:-nightly-retrain bulk-ingest batch-infer}"
CONFIG="$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")"

if [ -z "${PREFECT_API_URL:-}" ]; then
  echo "error: PREFECT_API_URL is not set (e.g. http://127.0.0.1:4200/api); start a server first:" \
       "'eval \"\$(.venv/bin/medseg ui --detach)\"' (local, with the UI) or 'prefect server start'" >&2
  exit 2
fi
"$PREFECT" --no-prompt work-pool inspect "$POOL" >/dev/null 2>&1 \
  || "$PREFECT" --no-prompt work-pool create "$POOL" --type process
if ! "$PREFECT" --no-prompt concurrency-limit inspect gpu >/dev/null 2>&1; then
  "$PREFECT" --no-prompt concurrency-limit create gpu "$GPU_SLOTS"
fi
cd "$REPO"   # deployments record this directory as the flows' working directory
for name in $DEPLOYMENTS; do
  "$PREFECT" --no-prompt deploy --prefect-file deploy/prefect.yaml --name "$name" --pool "$POOL" \
    --param "config_path=$CONFIG"
done
echo "medseg deployments ready: start a worker with: $PREFECT worker start --pool $POOL"
