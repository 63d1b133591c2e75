#!/usr/bin/env bash
# Installs mtx on one TPU VM worker: a virtualenv ($MTX_VENV, default ~/mtx-venv) holding this
# checkout (`pip install -e ".[tpu,gcs]"`: jax[tpu] with libtpu; gcsfs and google-cloud-storage
# for gs://). `mtx-launch tpu setup` runs it on every worker, after copying or cloning the
# checkout to ~/mtx.
#
# mtx needs Python 3.11 or newer; the TPU VM images (Ubuntu 22.04) have 3.10. So the venv's
# Python comes from uv (astral.sh/uv), which fetches a standalone CPython 3.11: one download,
# no apt, the same on every image. uv is installed into ~/.local/bin where it is missing.
# Rerunning it reinstalls the checkout into the existing venv (a new commit, changed extras).
set -euo pipefail

checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${MTX_VENV:-$HOME/mtx-venv}"
python_version="${MTX_PYTHON:-3.11}"
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"

if ! command -v uv >/dev/null; then
  curl -LsSf https://astral.sh/uv/install.sh | sh
fi
if [[ ! -x "$venv/bin/python" ]]; then
  uv venv --python "$python_version" "$venv"
fi
uv pip install --quiet --python "$venv/bin/python" -e "${checkout}[tpu,gcs]"
# Every worker must print the same versions: a mismatch fails in jax.distributed.initialize.
"$venv/bin/python" -c 'import socket, sys, jax, jaxlib
print(socket.gethostname(), "python", sys.version.split()[0], "jax", jax.__version__,
      "jaxlib", jaxlib.__version__)'
