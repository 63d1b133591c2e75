# mtx in one image for every accelerator: the binaries (mtx-train, mtx-prepare, mtx-sample,
# mtx-eval, mtx-launch) on the PATH, the repository in /opt/mtx (the Kubernetes jobs pass
# --config=/opt/mtx/configs/NAME.py). Build from the repository root; launch/container.md
# says how to build, push and run it.
#
#   docker build --build-arg ACCELERATOR=cuda13 -t mtx:cuda13 .
#
# ACCELERATOR picks setup.py's extra, that is which jax: cpu (none), cuda12, cuda13 or tpu
# (jax[cuda12], jax[cuda13], jax[tpu]). Anything else stops the build with a message.
# EXTRAS: more of setup.py's extras, comma-separated (default gcs: workdirs and data on gs://
# buckets, as the Kubernetes and TPU jobs use them; empty for none).
# AUDIO=1 adds FluidSynth and a General MIDI soundfont (about 150 MB more) for
# `mtx-sample --render=wav` and the audio of mtx-eval's report; without them both still
# run and say why no WAV was written.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG ACCELERATOR=cpu
ARG EXTRAS=gcs
ARG AUDIO=0

# Logs reach `docker logs` / `kubectl logs` as they are written; no .pyc files in a
# read-only install; no pip version check on every start.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN if [ "${AUDIO}" = 1 ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# The user the jobs run as (uid 1000): enough for CPU and for NVIDIA GPUs (the NVIDIA
# container runtime makes the GPU devices readable by every user). TPU VMs are the
# exception: their device files belong to root, so TPU containers run with `--user root`
# (launch/container.md).
RUN useradd --create-home --uid 1000 --shell /bin/bash mtx

WORKDIR /opt/mtx

# The dependencies first, from setup.py alone, so that a change to the code reuses this
# layer: find_packages finds no package yet, so this installs the requirements (and an
# empty mtx, removed again); the code is installed by the step after the copy.
COPY setup.py ./
RUN case "${ACCELERATOR}" in \
      cpu) extra="" ;; \
      cuda12 | cuda13 | tpu) extra="${ACCELERATOR}" ;; \
      *) echo "unknown ACCELERATOR=${ACCELERATOR}: use cpu, cuda12, cuda13 or tpu" >&2; exit 1 ;; \
    esac \
    && extras="${extra:+${extra},}${EXTRAS}" \
    && extras="${extras%,}" \
    && pip install --no-cache-dir "./${extras:+[${extras}]}" \
    && pip uninstall --yes mtx \
    && rm -rf build mtx.egg-info

# The code (.dockerignore keeps out venvs, data, runs and caches), installed without
# touching the dependencies; configs/ stays in /opt/mtx for --config=/opt/mtx/configs/...
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build mtx.egg-info

# Numeric, so that Kubernetes' runAsNonRoot can see it is not root.
USER 1000
