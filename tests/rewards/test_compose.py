"""Reward composition: weights, breakdown keys, a crashing plugin, an unknown name."""

from __future__ import annotations

import pytest

from chimera_core.config import load_config
from chimera_core.data import ResearchTask
from chimera_core.errors import PluginError
from chimera_core.plugins import RewardInput, build_registry
from chimera_core.plugins.manager import PluginInfo
from chimera_core.rewards import compose_reward

TASK = ResearchTask(id="1", goal="g?", context="metformin glucose", expected_decision="yes")


def test_weighted_mean_with_breakdown_and_notes() -> None:
    config = load_config("local", environ={})
    registry = build_registry(environ={"CHIMERA_PLUGINS": ""})

    class Boom:
        name = "boom"

        def score(self, inp: RewardInput) -> None:
            raise RuntimeError("plugin bug")

    registry.add("reward", Boom(), PluginInfo("t", "tests", builtin=False))
    config.rewards.weights = {"decision_alignment": 3.0, "boom": 1.0}
    state = {"final_decision": "GO", "final_answer": "yes"}
    out = compose_reward(registry, RewardInput(task=TASK, state=state, config=config))
    assert out.components == {"decision_alignment": 1.0, "boom": 0.0}
    assert out.value == pytest.approx(0.75)
    assert out.breakdown["decision_alignment.aligned_original"] == 1.0
    assert out.notes == {"boom": "RuntimeError: plugin bug"}

    config.rewards.weights = {"nope": 1.0}
    with pytest.raises(PluginError, match="unknown reward 'nope'"):
        compose_reward(registry, RewardInput(task=TASK, state=state, config=config))
