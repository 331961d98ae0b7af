"""decision_alignment and protocol_rubric on hand-made states."""

from __future__ import annotations

import pytest

from chimera_core.config import ChimeraConfig, load_config
from chimera_core.data import ResearchTask
from chimera_core.plugins import RewardInput, RewardScore, build_registry

CONTEXT = (
    "Metformin lowered fasting glucose in obese adolescents with insulin resistance over "
    "twelve weeks; hepatic fat fraction measured by magnetic resonance also decreased."
)


@pytest.fixture(scope="module")
def config() -> ChimeraConfig:
    return load_config("local", environ={})


def _task(label: str) -> ResearchTask:
    return ResearchTask(
        id="1", goal="Does metformin help?", context=CONTEXT, expected_decision=label
    )


def _score(name: str, config: ChimeraConfig, label: str, **state: object) -> RewardScore:
    reward = build_registry(environ={"CHIMERA_PLUGINS": ""}).reward(name)
    score: RewardScore = reward.score(RewardInput(task=_task(label), state=state, config=config))
    return score


@pytest.mark.parametrize(
    ("decision", "answer", "label", "aligned", "exact"),
    [
        ("GO", "yes", "yes", 1.0, 1.0),
        ("NO-GO", "no", "no", 1.0, 1.0),
        ("GO", "no", "no", 0.0, 1.0),
        ("NO-GO", "maybe", "maybe", 0.0, 1.0),
        ("GO", "yes", "maybe", 0.0, 0.0),
        (None, None, "yes", 0.0, 0.0),
    ],
)
def test_decision_alignment_reports_both_rules(
    config: ChimeraConfig,
    decision: str | None,
    answer: str | None,
    label: str,
    aligned: float,
    exact: float,
) -> None:
    score = _score(
        "decision_alignment", config, label, final_decision=decision, final_answer=answer
    )
    assert score.value == aligned
    assert score.breakdown == {
        "aligned_original": aligned,
        "exact_answer": exact,
        "label_maybe": float(label == "maybe"),
    }
    exact_config = config.model_copy(deep=True)
    exact_config.rewards.alignment_mode = "exact"
    exact_score = _score(
        "decision_alignment", exact_config, label, final_decision=decision, final_answer=answer
    )
    assert exact_score.value == exact


def test_protocol_rubric_prefers_a_grounded_specific_protocol(config: ChimeraConfig) -> None:
    good = {
        "title": "Metformin and hepatic fat in obese adolescents with insulin resistance",
        "steps": [
            "Recruit 120 obese adolescents with insulin resistance and randomise them 1:1",
            "Give metformin 1000 mg twice daily or placebo for twelve weeks",
            "Measure fasting glucose and hepatic fat fraction by magnetic resonance at baseline",
        ],
        "safety_concerns": ["lactic acidosis monitoring", "gastrointestinal intolerance"],
        "budget_usd": 250000,
    }
    vague = {"title": "Do a study", "steps": ["Think"], "safety_concerns": [], "budget_usd": "lots"}
    good_score = _score("protocol_rubric", config, "yes", final_protocol=good)
    vague_score = _score("protocol_rubric", config, "yes", final_protocol=vague)
    assert good_score.value == pytest.approx(1.0)
    assert vague_score.value < 0.3
    assert vague_score.breakdown["budget_numeric"] == 0.0
    none_score = _score("protocol_rubric", config, "yes")
    assert none_score.value == 0.0 and none_score.reason == "no protocol produced"
