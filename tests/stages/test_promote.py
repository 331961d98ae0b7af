"""Champion/challenger promotion on stored evaluation results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.config import load_config
from chimera_core.config.models import EvaluateConfig
from chimera_core.evaluation.metrics import COMPARED
from chimera_core.model_registry import ModelRegistry
from chimera_core.stages import execute_stage, stage_fn


def _comparison(metric: str, delta: float, ci_low: float) -> dict[str, Any]:
    return {"metric": metric, "delta": delta, "ci_low": ci_low, "ci_high": delta + 0.1}


def _setup(
    tmp_path: Path, delta: float, ci_low: float, guards: list[dict[str, Any]] | None = None
) -> tuple[LocalArtifactStore, ModelRegistry]:
    store = LocalArtifactStore(tmp_path / "store")
    registry = ModelRegistry(store, tmp_path / "cache")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "w").write_text("x")
    registry.register("junior", ckpt, parent="base", stage="sft", run_id="r1")
    if guards is None:
        guards = [_comparison("macro_f1", 0.0, -0.05)]
    store.put_json(
        "runs/r1/evaluate/result.json",
        {
            "stage": "evaluate",
            "run_id": "r1",
            "metrics": {
                "baseline": "base",
                "sets": {
                    "base": {"junior": "base", "senior": "base"},
                    "challenger": {"junior": "sft-r1", "senior": "base"},
                },
                "comparisons": [_comparison("mean_reward", delta, ci_low), *guards],
            },
        },
    )
    return store, registry


def _promote(store: LocalArtifactStore, **evaluate: Any) -> dict[str, Any]:
    overrides = {f"stages.evaluate.{k}": v for k, v in evaluate.items()}
    config = load_config("local", overrides=overrides, environ={})
    fn = stage_fn("promote")
    return execute_stage(fn, "promote", config, "r1", store=store, force=True).metrics


@pytest.mark.parametrize(
    ("delta", "ci_low", "promoted"), [(0.1, 0.02, True), (0.1, -0.01, False), (-0.05, -0.1, False)]
)
def test_promotion_needs_a_clear_win(
    tmp_path: Path, delta: float, ci_low: float, promoted: bool
) -> None:
    store, registry = _setup(tmp_path, delta, ci_low)
    metrics = _promote(store)
    assert registry.champion("junior") == ("sft-r1" if promoted else "base")
    assert registry.champion("senior") == "base"
    assert metrics["candidates"] == {"junior": "sft-r1"}
    assert ("kept as candidate" in metrics["reason"]) is not promoted
    assert metrics["guards"] == {"macro_f1": 0.0}  # no drop: the guard held


def test_a_guard_metric_that_fell_refuses_promotion(tmp_path: Path) -> None:
    # The primary metric clearly won, macro-F1 fell: e.g. "yes" to everything.
    store, registry = _setup(tmp_path, 0.1, 0.02, [_comparison("macro_f1", -0.02, -0.08)])
    metrics = _promote(store)
    assert registry.champion("junior") == "base" and metrics["promoted"] == {}
    assert metrics["reason"] == (
        "kept as candidate: guard macro_f1 fell: delta -0.020, 95% CI [-0.080, +0.080]; "
        "a guard may not drop"
    )
    # With no guards the same evaluation promotes, and says the primary metric's interval.
    metrics = _promote(store, guard_metrics=[])
    assert registry.champion("junior") == "sft-r1"
    assert metrics["reason"].startswith("mean_reward improved by +0.100")


def test_every_failed_condition_is_named(tmp_path: Path) -> None:
    store, registry = _setup(tmp_path, -0.05, -0.1, [_comparison("macro_f1", -0.01, -0.03)])
    metrics = _promote(store, guard_metrics=["macro_f1", "success_rate"])
    reason = metrics["reason"]
    assert reason.startswith("kept as candidate: mean_reward delta -0.050")
    assert "guard macro_f1 fell: delta -0.010" in reason
    # An evaluation from before the guard existed holds no evidence that it did not drop.
    assert "guard success_rate was not compared (run evaluate again)" in reason
    assert registry.champion("junior") == "base"


def test_guards_that_held_are_in_the_reason(tmp_path: Path) -> None:
    guards = [_comparison("macro_f1", 0.03, -0.01), _comparison("exact_accuracy", 0.0, -0.02)]
    store, registry = _setup(tmp_path, 0.1, 0.02, guards)
    metrics = _promote(store, guard_metrics=["macro_f1", "exact_accuracy"])
    assert registry.champion("junior") == "sft-r1"
    assert metrics["reason"].endswith("; guards held: macro_f1 +0.030, exact_accuracy +0.000")


def test_primary_and_guard_metrics_must_be_compared_metrics() -> None:
    # The config layer keeps its own list (it may not import evaluation); the two stay equal.
    for metric in COMPARED:
        assert EvaluateConfig(primary_metric=metric, guard_metrics=[metric])
    assert EvaluateConfig().guard_metrics == ["macro_f1"]
    with pytest.raises(ValidationError, match="primary_metric: 'mean_turns' is not a compared"):
        EvaluateConfig(primary_metric="mean_turns")
    with pytest.raises(ValidationError, match="guard_metrics: 'f1' is not a compared metric"):
        EvaluateConfig(guard_metrics=["macro_f1", "f1"])
    # The list itself: a name the config accepted and evaluate never compared would pass above.
    with pytest.raises(ValidationError) as err:
        EvaluateConfig(primary_metric="x")
    assert f"(one of {', '.join(COMPARED)})" in str(err.value)
