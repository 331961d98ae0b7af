"""The training stages' frame: train over the alias's base, continue the champion's adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.config import load_config
from chimera_core.config.models import SFTConfig
from chimera_core.errors import ChimeraError
from chimera_core.registry import BASE
from chimera_core.stages.base import StageContext
from chimera_core.stages.training_inputs import train_and_register
from chimera_core.training.checkpoint import TrainedModel
from tests.tiny_llama import profile_aliases, random_adapter


def _ctx(tmp_path: Path, base_dir: Path, run_id: str) -> StageContext:
    overrides = {f"models.{alias}.checkpoint": str(base_dir) for alias in profile_aliases()}
    overrides["serving.models_dir"] = str(tmp_path / "models")
    config = load_config("local", overrides=overrides, environ={})
    store = LocalArtifactStore(tmp_path / "store")
    return StageContext(config, run_id, "sft", store, registry=None)  # type: ignore[arg-type]


def test_train_and_register_continues_the_champions_adapter(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    calls: list[tuple[Path, Path | None]] = []

    def train(base: Path, parent: Path | None, out: Path) -> TrainedModel:
        calls.append((base, parent))
        return TrainedModel(output_dir=str(random_adapter(base, out, seed=len(calls))))

    def run(run_id: str) -> str:
        result = train_and_register(
            _ctx(tmp_path, tiny_llama_dir, run_id),
            "junior",
            train,
            examples=[{"x": 1}],
            stage_config=SFTConfig(),
            metrics={},
            reported=set(),
        )
        return str(result.outputs["version"])

    assert run("r1") == "sft-r1"
    assert calls[-1] == (tiny_llama_dir.resolve(), None)  # champion base: a fresh adapter
    registry = _ctx(tmp_path, tiny_llama_dir, "r1").models
    registry.promote("junior", "sft-r1", reason="test")

    assert run("r2") == "sft-r2"
    base, parent = calls[-1]
    assert base == tiny_llama_dir.resolve()  # always the base, never a merged parent
    assert parent is not None
    assert (parent / "adapter_model.safetensors").read_bytes() == (
        registry.fetch("junior", "sft-r1") / "adapter_model.safetensors"
    ).read_bytes()
    assert registry.get("junior", "sft-r2").parent == "sft-r1"
    assert registry.champion("junior") == "sft-r1" != BASE


def test_train_and_register_refuses_a_trainer_that_saved_no_adapter(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    def train(base: Path, parent: Path | None, out: Path) -> TrainedModel:
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"full weights")
        return TrainedModel(output_dir=str(out))

    ctx = _ctx(tmp_path, tiny_llama_dir, "r1")
    with pytest.raises(ChimeraError, match="the sft trainer saved no LoRA adapter"):
        train_and_register(
            ctx, "junior", train, examples=[], stage_config=SFTConfig(), metrics={}, reported=set()
        )
    assert ctx.models.versions("junior") == []
