"""Reward composition: weights, breakdown keys, a crashing plugin, an unknown name."""

from __future__ import annotations

import pytest

from chimera_core.config import load_config
from chimera_core.data import ResearchTask
from chimera_core.errors import FaultError, PluginError
from chimera_core.plugins import RewardInput, RewardScore, build_registry
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
    # The crashed reward has no score: left out, the mean renormalised over the one that scored.
    assert out.components == {"decision_alignment": 1.0}
    assert out.value == pytest.approx(1.0)
    assert out.breakdown["decision_alignment.aligned_original"] == 1.0
    assert out.failed == ["boom"]
    assert out.notes == {"boom": "RuntimeError: plugin bug [plugin 't' (package tests)]"}

    config.rewards.weights = {"nope": 1.0}
    with pytest.raises(PluginError, match="unknown reward 'nope'"):
        compose_reward(registry, RewardInput(task=TASK, state=state, config=config))


class Penalised:
    """A reward that fails on its own terms, with the penalty it chose (as the judge does)."""

    name = "penalised"

    def score(self, inp: RewardInput) -> RewardScore:
        return RewardScore(value=0.2, failed=True, reason="judge call failed")


class Boom:
    name = "boom"

    def score(self, inp: RewardInput) -> RewardScore:
        raise RuntimeError("plugin bug")


def test_a_reward_that_returns_failed_counts_its_penalty_and_is_listed() -> None:
    config = load_config("local", environ={})
    registry = build_registry(environ={"CHIMERA_PLUGINS": ""})
    registry.add("reward", Penalised(), PluginInfo("t", "tests", builtin=False))
    config.rewards.weights = {"decision_alignment": 1.0, "penalised": 1.0}
    state = {"final_decision": "GO", "final_answer": "yes"}
    out = compose_reward(registry, RewardInput(task=TASK, state=state, config=config))
    assert out.value == pytest.approx(0.6) and out.failed == ["penalised"]
    assert out.notes == {"penalised": "judge call failed"}


def test_no_reward_scoring_is_a_fault_naming_each_reward_and_its_plugin() -> None:
    config = load_config("local", environ={})
    registry = build_registry(environ={"CHIMERA_PLUGINS": ""})
    registry.add("reward", Boom(), PluginInfo("t", "tests", builtin=False))
    config.rewards.weights = {"boom": 1.0}
    with pytest.raises(FaultError, match=r"boom: RuntimeError: plugin bug \[plugin 't'"):
        compose_reward(registry, RewardInput(task=TASK, state={}, config=config))
