"""HierarchicalTraceAdapter on a real recorded rollout (spans from a gather run with SmolLM2)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from chimera_core.config import load_config
from chimera_core.data.rollouts import RolloutRecord
from chimera_plugins.adapters.hierarchical import HierarchicalTraceAdapter, TracedRollout

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_rollout.json.gz"


@pytest.fixture(scope="module")
def recorded() -> TracedRollout:
    with gzip.open(FIXTURE, "rt") as fh:
        payload = json.load(fh)
    return TracedRollout(RolloutRecord.model_validate(payload["record"]), payload["spans"])


def test_all_three_tiers_get_data(recorded: TracedRollout) -> None:
    config = load_config("local", environ={})
    data = HierarchicalTraceAdapter().adapt([recorded], config)
    assert data.n_rollouts == 1 and data.n_spans == len(recorded.spans)
    assert {e.role for e in data.sft} == set(config.roles_of_tier("junior"))
    for example in data.sft:
        assert example.messages[-1]["role"] == "assistant"
        assert example.reward == recorded.record.reward
    assert {e.role for e in data.rl} <= set(config.roles_of_tier("senior"))
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
