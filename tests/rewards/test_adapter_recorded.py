"""HierarchicalTraceAdapter on a real recorded rollout (spans from a gather run with SmolLM2)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from chimera_core.config import load_config
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.errors import ConfigError
from chimera_plugins.adapters.hierarchical import HierarchicalTraceAdapter, TracedRollout

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_rollout.json.gz"


@pytest.fixture(scope="module")
def recorded() -> TracedRollout:
    with gzip.open(FIXTURE, "rt") as fh:
        payload = json.load(fh)
    return TracedRollout(RolloutRecord.model_validate(payload["record"]), payload["spans"])


def test_every_trained_tier_gets_data(recorded: TracedRollout) -> None:
    config = load_config("local", environ={})
    data = HierarchicalTraceAdapter().adapt([recorded], config)
    assert data.n_rollouts == 1 and data.n_spans == len(recorded.spans)
    pi = "PrincipalInvestigator"
    assert {e.role for e in data.sft} == {*config.roles_of_tier("junior"), pi}
    record = recorded.record
    # The PI is rewarded by the label (original rule here), the juniors by the rollout's reward.
    decided = float(
        {"yes": "GO", "no": "NO-GO"}.get(record.expected_decision) == record.final_decision
    )
    for example in data.sft:
        assert example.messages[-1]["role"] == "assistant"
        assert example.reward == (decided if example.role == pi else record.reward)
    assert {e.role for e in data.rl} <= {*config.roles_of_tier("senior"), pi}
    assert pi in {e.role for e in data.rl}
    assert all(e.reward == decided for e in data.rl if e.role == pi)
    assert data.rl and all(e.prompt_token_ids and e.response_token_ids for e in data.rl)
    (sample,) = data.bandit
    assert sample.hypotheses and 0 < sample.propensity <= 1
    assert sample.chosen < len(sample.hypotheses)


def test_failed_rollouts_contribute_nothing(recorded: TracedRollout) -> None:
    failed = TracedRollout(
        recorded.record.model_copy(update={"status": "failed", "reward": None}), recorded.spans
    )
    data = HierarchicalTraceAdapter().adapt([failed], load_config("local", environ={}))
    assert (data.sft, data.rl, data.bandit, data.n_rollouts) == ([], [], [], 0)


def test_the_decision_maker_learns_from_the_configured_decision_reward(
    recorded: TracedRollout,
) -> None:
    config = load_config("local", environ={}, overrides={"rewards.decision_reward": "llm_judge"})
    data = HierarchicalTraceAdapter().adapt([recorded], config)
    pi = [e.reward for e in data.sft if e.role == "PrincipalInvestigator"]
    assert pi and set(pi) == {recorded.record.reward_components["llm_judge"]}


def test_a_decision_reward_that_is_not_scored_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"rewards\.decision_reward: 'planted'"):
        load_config("local", environ={}, overrides={"rewards.decision_reward": "planted"})
