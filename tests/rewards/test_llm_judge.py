"""The LLM judge: weighted criteria, lenient JSON, rescaled scales, penalties on failure."""

from __future__ import annotations

import json

import pytest

from chimera_core.config import ChimeraConfig, load_config
from chimera_core.data import ResearchTask
from chimera_core.plugins import RewardInput, build_registry
from chimera_plugins.rewards.llm_judge import CRITERIA_HELP as CRITERIA

TASK = ResearchTask(
    id="9", goal="Does X help?", context="X reduced Y in 40 adults.", expected_decision="yes"
)
STATE = {
    "final_protocol": {"title": "t", "steps": ["a"], "safety_concerns": [], "budget_usd": 1},
    "final_decision": "GO",
    "final_answer": "yes",
}


@pytest.fixture(scope="module")
def config() -> ChimeraConfig:
    return load_config("local", environ={})


def _score(config: ChimeraConfig, reply: str | Exception, state: dict = STATE, shared: str = ""):  # type: ignore[no-untyped-def]
    seen: list[list[dict[str, str]]] = []

    def chat(alias: str, messages: list[dict[str, str]], *, json_schema: dict | None = None) -> str:  # type: ignore[type-arg]
        assert alias == config.rewards.judge_model
        assert json_schema is not None and set(json_schema["properties"]) == set(CRITERIA)
        seen.append(messages)
        if isinstance(reply, Exception):
            raise reply
        return reply

    judge = build_registry(environ={"CHIMERA_PLUGINS": ""}).reward("llm_judge")
    inp = RewardInput(task=TASK, state=state, config=config, chat=chat, shared_context=shared)
    return judge.score(inp), seen


def test_weighted_scores_from_a_fenced_reply(config: ChimeraConfig) -> None:
    reply = (
        "Here is my verdict:\n```json\n"
        '{"novelty": 1, "feasibility": 0.5, "impact": 0.5, "clarity": 1, '
        '"groundedness": 0, "efficiency": 1}\n```'
    )
    score, seen = _score(config, reply)
    assert not score.failed
    # 0.10*1 + 0.20*0.5 + 0.30*0.5 + 0.15*1 + 0.20*0 + 0.05*1 = 0.55
    assert score.value == pytest.approx(0.55)
    assert score.breakdown["groundedness"] == 0
    assert "X reduced Y in 40 adults." in seen[0][0]["content"]
    assert '"steps": [' in seen[0][-1]["content"] and "Decision: GO" in seen[0][-1]["content"]


def test_judge_opens_with_the_labs_task_message(config: ChimeraConfig) -> None:
    from chimera_core.lab import run_task
    from chimera_core.lab.prompts import shared_task_message
    from tests.lab.scripted import FakeTools, ScriptedProvider

    provider = ScriptedProvider()
    state = run_task(TASK, config, provider, tools=FakeTools())
    # One text for every call of every role (a set of one).
    (lab_first,) = {m[0].content for model in provider.models.values() for m in model.prompts}
    # What a rollout passes the rewards as RewardInput.shared_context (rollouts/agent.py).
    shared = shared_task_message(TASK.goal, TASK.context)
    reply = json.dumps(dict.fromkeys(CRITERIA, 0.5))
    score, seen = _score(config, reply, state=dict(state), shared=shared)
    assert not score.failed
    # Byte-identical: the judge's call on the same base model reuses the lab's cached prefix.
    assert seen[0][0] == {"role": "system", "content": lab_first}


def test_ten_point_scale_is_rescaled(config: ChimeraConfig) -> None:
    reply = json.dumps(dict.fromkeys(CRITERIA, 8))
    score, _ = _score(config, reply)
    assert score.value == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I think it is great!", "judge reply unusable"),
        ('{"novelty": 0.5}', "judge reply unusable"),
        (TimeoutError("read timed out"), "judge call failed: TimeoutError"),
    ],
)
def test_failures_give_the_penalty_with_a_reason(
    config: ChimeraConfig, reply: str | Exception, reason: str
) -> None:
    score, _ = _score(config, reply)
    assert score.failed and score.value == pytest.approx(0.1)
    assert set(score.breakdown.values()) == {0.1}
    assert score.reason is not None and score.reason.startswith(reason)


def test_no_protocol_is_penalised_without_a_call(config: ChimeraConfig) -> None:
    score, seen = _score(config, "{}", state={"final_decision": "GO"})
    assert score.failed and seen == []
