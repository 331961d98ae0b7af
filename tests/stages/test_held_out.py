"""An evaluation refuses held-out tasks that the evaluated models' lineage was trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.config import load_config
from chimera_core.data.dataset import publish_task_dataset
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ChimeraError
from chimera_core.model_registry import ModelRegistry
from chimera_core.plugins import get_registry
from chimera_core.stages import evaluate
from chimera_core.stages.base import StageContext
from chimera_core.stages.evaluate import held_out_overlap


def _registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(LocalArtifactStore(tmp_path / "store"), tmp_path / "cache")
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "adapter_config.json").write_text("{}")
    registry.register(
        "junior", weights, parent="base", stage="sft", run_id="r1", task_ids=["1", "2"]
    )
    registry.register("junior", weights, parent="sft-r1", stage="sft", run_id="r2", task_ids=["3"])
    return registry


def test_a_version_inherits_the_training_tasks_of_its_parents(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    assert registry.lineage_tasks("junior", "sft-r2") == {
        "1": "sft-r1",
        "2": "sft-r1",
        "3": "sft-r2",
    }
    assert registry.lineage_tasks("junior", "base") == {}


def test_overlap_names_the_set_the_version_and_the_tasks(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    sets = {"champion": {"junior": "base"}, "challenger": {"junior": "sft-r2"}}
    assert held_out_overlap(registry, sets, {"7", "8"}) == []
    (problem,) = held_out_overlap(registry, sets, {"2", "3", "9"})
    assert problem.startswith("challenger junior=sft-r2: 2 held-out task(s)")
    assert "sft-r1, sft-r2" in problem and "2, 3" in problem


def test_evaluate_refuses_before_any_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rollouts(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no rollout may start on overlapping tasks")

    monkeypatch.setattr(evaluate, "served_rollouts", no_rollouts)
    tasks = [
        ResearchTask(id=f"t{i}", goal="g", context="c", expected_decision="yes", split=split)
        for i, split in enumerate(["train", "validation", "validation"])
    ]
    overrides = {"serving.models_dir": str(tmp_path / "models"), "stages.evaluate.n_tasks": 2}
    config = load_config("local", overrides=overrides, environ={})
    store = LocalArtifactStore(tmp_path / "store")
    publish_task_dataset(store, tasks, "test tasks", "seed")
    ctx = StageContext(config, "r9", "evaluate", store, get_registry())
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "adapter_config.json").write_text("{}")
    # A champion trained on a task that is held out here (another split method, say).
    ctx.models.register("junior", weights, parent="base", stage="sft", run_id="r1", task_ids=["t2"])
    ctx.models.promote("junior", "sft-r1", reason="test")
    with pytest.raises(ChimeraError, match=r"champion junior=sft-r1: 1 held-out task\(s\)"):
        evaluate.run(ctx)
