"""Model registry: versions with lineage, champion pointer, verified fetch."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.errors import ChimeraError
from chimera_core.registry import BASE, ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalArtifactStore(tmp_path / "store"), tmp_path / "cache")


def _checkpoint(tmp_path: Path, content: str) -> Path:
    ckpt = tmp_path / f"ckpt-{content}"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "llama"}')
    (ckpt / "model.safetensors").write_text(content)
    return ckpt


def test_register_fetch_promote(registry: ModelRegistry, tmp_path: Path) -> None:
    assert registry.champion("junior") == BASE
    assert registry.model_set("champion", ["junior", "senior"]) == {"junior": BASE, "senior": BASE}
    v = registry.register(
        "junior",
        _checkpoint(tmp_path, "w1"),
        parent=BASE,
        stage="sft",
        run_id="r1",
        data_sha256="abc",
        metrics={"loss": 1.0},
    )
    assert v.version == "sft-r1" and v.parent == BASE and v.uri.startswith("file://")
    # Idempotent for a run id: registering again returns the same record.
    again = registry.register(
        "junior", _checkpoint(tmp_path, "w2"), parent=BASE, stage="sft", run_id="r1"
    )
    assert again == v
    assert registry.versions("junior") == ["sft-r1"]
    local = registry.fetch("junior", "sft-r1")
    assert (local / "model.safetensors").read_text() == "w1"
    registry.promote("junior", "sft-r1", reason="beat base")
    assert registry.champion("junior") == "sft-r1"
    assert registry.model_set("champion", ["junior", "senior"]) == {
        "junior": "sft-r1",
        "senior": BASE,
    }
    assert registry.model_set("base", ["junior"]) == {"junior": BASE}
    assert registry.aliases() == ["junior"]


def test_unknown_version_lists_known(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("senior", _checkpoint(tmp_path, "w"), parent=BASE, stage="ppo", run_id="r9")
    with pytest.raises(
        ChimeraError, match=r"unknown version 'x' of model 'senior' \(known: ppo-r9\)"
    ):
        registry.get("senior", "x")
    with pytest.raises(ChimeraError, match="unknown model set"):
        registry.model_set("best", ["senior"])
