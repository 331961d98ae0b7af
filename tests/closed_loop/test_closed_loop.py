"""Closed loop: one short cycle raises a planted, learnable reward, with a paired CI above zero.

The real thing end to end: vLLM (CPU build) serving SmolLM2 to every role, rollouts through
Agent Lightning, the planted reward plugin (``planted_go``: pays for a GO decision, which the
base PI gives only when sampled), the trace adapter, the board stage's rejection-sampling SFT,
the model registry, the new adapter served by name, and the evaluate stage's paired bootstrap.
Each assertion names the link it guards; cutting any one of them fails the test.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.cli.main import main
from chimera_core.model_registry import ModelRegistry
from chimera_core.plugins import get_registry
from chimera_core.rollouts.storage import load_records
from tests.closed_loop.planted_reward import MODULE, PLANTED, closed_loop_profile
from tests.conftest import TEST_MODELS

pytestmark = pytest.mark.slow


@pytest.fixture
def planted_plugin(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The planted reward loaded as an uninstalled plugin, here and in the rollout processes."""
    monkeypatch.setenv("CHIMERA_PLUGIN_MODULES", MODULE)
    get_registry.cache_clear()
    yield
    monkeypatch.delenv("CHIMERA_PLUGIN_MODULES")
    get_registry.cache_clear()


@pytest.mark.timeout(1800)  # a whole cycle on 2 CPU cores: about 10 minutes
def test_one_cycle_raises_the_planted_reward(
    tmp_path: Path, pubmedqa_file: Path, planted_plugin: Any
) -> None:
    profile = closed_loop_profile(tmp_path, pubmedqa_file, n_gather=16, n_eval=8)
    run_id = f"loop-{time.strftime('%Y%m%d%H%M%S')}"  # a version name never cached before
    stages = "ingest,gather,board,evaluate"
    assert main(["pipeline", "run", "--profile", str(profile), "--run-id", run_id,
                 "--stages", stages]) == 0  # fmt: skip
    store = LocalArtifactStore(tmp_path / "artifacts")

    def result(stage: str) -> dict[str, Any]:
        return store.get_json(f"runs/{run_id}/{stage}/result.json")

    # Link 1, reward plugin -> records: every gathered rollout was scored by the planted reward
    # alone, and the sampled PI gave GO sometimes (what there is to learn).
    gathered = load_records(store, result("gather")["outputs"]["rollouts_key"])
    assert gathered and all(r.status == "succeeded" for r in gathered)
    assert all(r.reward_components == {PLANTED: r.reward} for r in gathered)
    go = [r for r in gathered if r.final_decision == "GO"]
    assert 0 < len(go) < len(gathered), [r.final_decision for r in gathered]

    # Link 2, traces -> adapter -> trainer: the board stage kept exactly the PI conversations of
    # rollouts the reward paid, and trained on them.
    board = result("board")
    assert board["metrics"]["kept"] >= len(go), board["metrics"]
    assert board["metrics"]["steps"] == 12 and board["metrics"]["losses"]

    # Link 3, trainer -> registry: a new version of the PI's alias; its lineage holds the tasks
    # whose traces the algorithm was given.
    registry = ModelRegistry(store, TEST_MODELS / "registry")
    version = board["outputs"]["version"]
    assert board["outputs"]["alias"] == "pi" and version in registry.versions("pi")
    assert set(registry.lineage_tasks("pi", version)) == {r.task_id for r in gathered}

    # Link 4, registry -> serving -> evaluation: the challenger ran with that adapter served.
    evaluation = result("evaluate")
    assert evaluation["metrics"]["sets"]["challenger"]["pi"] == version
    assert evaluation["metrics"]["sets"]["base"]["pi"] == "base"
    challenger = load_records(store, f"runs/{run_id}/evaluate/challenger")
    assert challenger and all(r.model_set["pi"] == version for r in challenger)

    # Link 5, the whole loop: the planted reward rose, the paired 95% CI above zero.
    (comparison,) = [
        c for c in evaluation["metrics"]["comparisons"] if c["metric"] == "mean_reward"
    ]
    print("\nclosed loop:", json.dumps(comparison))
    assert comparison["n_pairs"] == 8
    assert comparison["delta"] > 0 and comparison["ci_low"] > 0, comparison
