#!/usr/bin/env bash
# Create .venv and install medseg with the pins this machine class needs.
#   bash deploy/install.sh          # runtime
#   bash deploy/install.sh --dev    # + test/lint tools, and .venv-validators: the other tools' validators the
#                                   #   tests run medseg's outputs through (ome-zarr-models pins another pydantic;
#                                   #   nnunetv2 on the same CPU torch wheel, installed first); and Debian's
#                                   #   chromium (apt, as root) that the browser tests drive with playwright
# torch goes in first (the CPU wheel 2.13.0); the constraints keep every later install on it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
python3 -m venv .venv
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | quiet
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras}" 2>&1 | quiet
if .venv/bin/python -m pip list 2>/dev/null | grep -qi '^nvidia'; then
  echo "install.sh: CUDA wheels were pulled in (torch other than 2.13.0?); fix constraints.txt" >&2
  exit 1
fi
if [ "${1:-}" = "--dev" ]; then
  [ -x .venv-validators/bin/python ] || python3 -m venv .venv-validators
  .venv-validators/bin/python -m pip install -q "torch==2.13.0" 2>&1 | quiet  # first: nnunetv2 needs torch
  .venv-validators/bin/python -m pip install -q "torch==2.13.0" -r deploy/validators.txt 2>&1 | quiet
  if ! command -v chromium >/dev/null; then  # tests/browser: playwright drives it (no browser download)
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "install.sh: the browser tests need Debian's chromium: sudo apt-get install -y chromium" >&2
    fi
  fi
fi
.venv/bin/python -c "import torch, medseg; print(f'medseg {medseg.__version__} ready (torch {torch.__version__})')"
