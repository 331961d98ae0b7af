"""Champion/challenger promotion on stored evaluation results."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.config import load_config
from chimera_core.model_registry import ModelRegistry
from chimera_core.stages import execute_stage, stage_fn


def _setup(tmp_path: Path, delta: float, ci_low: float) -> tuple[LocalArtifactStore, ModelRegistry]:
    store = LocalArtifactStore(tmp_path / "store")
    registry = ModelRegistry(store, tmp_path / "cache")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "w").write_text("x")
    registry.register("junior", ckpt, parent="base", stage="sft", run_id="r1")
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
                "comparisons": [
                    {
                        "metric": "mean_reward",
                        "delta": delta,
                        "ci_low": ci_low,
                        "ci_high": delta + 0.1,
                    }
                ],
            },
        },
    )
    return store, registry


@pytest.mark.parametrize(
    ("delta", "ci_low", "promoted"), [(0.1, 0.02, True), (0.1, -0.01, False), (-0.05, -0.1, False)]
)
def test_promotion_needs_a_clear_win(
    tmp_path: Path, delta: float, ci_low: float, promoted: bool
) -> None:
    store, registry = _setup(tmp_path, delta, ci_low)
    config = load_config("local", environ={})
    result = execute_stage(stage_fn("promote"), "promote", config, "r1", store=store)
    assert registry.champion("junior") == ("sft-r1" if promoted else "base")
    assert registry.champion("senior") == "base"
    assert result.metrics["candidates"] == {"junior": "sft-r1"}
    assert ("kept as candidate" in result.metrics["reason"]) is not promoted
