"""Structured answers are decoded under each role's full, bounded schema; a reply cut at the
token budget is recorded as truncated, not as a malformed answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from chimera_core.data.agent_outputs import (
    CHARS_PER_TOKEN,
    JuniorResearch,
    Output,
    PIDecision,
    Protocol,
    RefinedHypothesis,
    ReviewDecision,
    SupervisorChoice,
    decoding_budget,
    decoding_schema,
)
from chimera_core.lab.agents import Turn

SCHEMAS = [
    JuniorResearch,
    SupervisorChoice,
    RefinedHypothesis,
    Protocol,
    ReviewDecision,
    PIDecision,
]


def _longest(prop: dict[str, Any]) -> Any:
    """The longest value a bounded schema property allows."""
    if "enum" in prop:
        return max(prop["enum"], key=len)
    if prop["type"] == "string":
        return "x" * prop["maxLength"]
    if prop["type"] == "array":
        return [_longest(prop["items"])] * prop["maxItems"]
    return prop.get("maximum", 10**6)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_every_field_is_required_and_bounded(schema: type[Output]) -> None:
    decoded = decoding_schema(schema)
    assert decoded["additionalProperties"] is False
    assert decoded["required"] == list(decoded["properties"])
    for name, prop in decoded["properties"].items():
        if prop.get("type") == "string" and "enum" not in prop:
            assert "maxLength" in prop, name
        if prop.get("type") == "array":
            assert "maxItems" in prop and "maxLength" in prop["items"], name
    assert "agent_name" not in decoded["properties"]  # the lab fills it in


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_the_longest_answer_the_schema_allows_fits_the_budget_and_parses(
    schema: type[Output],
) -> None:
    longest = {n: _longest(p) for n, p in decoding_schema(schema)["properties"].items()}
    text = json.dumps(longest, separators=(",", ":"))  # compact, as the server decodes it
    assert len(text) / CHARS_PER_TOKEN <= decoding_budget(schema)
    schema.model_validate(longest)


def test_a_reply_cut_at_the_budget_is_recorded_as_truncated() -> None:
    cut = AIMessage(
        content='{"title": "Aspirin and str', response_metadata={"finish_reason": "length"}
    )
    model = RunnableLambda(lambda _messages: cut)
    turn = Turn("ProtocolDesigner", "senior")
    reply = turn.call(model, [HumanMessage("design")])
    result = turn.ask(model, [HumanMessage("design")], reply, Protocol)
    assert not result.ok
    update = turn.update()
    assert update["truncated"] == {"ProtocolDesigner": True}
    assert update["schema_valid"] == {"ProtocolDesigner": False}
    assert [e["kind"] for e in turn.errors] == ["truncated"]


def test_a_complete_reply_is_not_truncated() -> None:
    done = AIMessage(
        content='{"final_decision": "GO", "answer": "yes", "rationale": "r"}',
        response_metadata={"finish_reason": "stop"},
    )
    turn = Turn("PrincipalInvestigator", "board")
    reply = turn.call(RunnableLambda(lambda _m: done), [HumanMessage("decide")])
    assert turn.ask(RunnableLambda(lambda _m: done), [], reply, PIDecision).ok
    assert turn.update()["truncated"] == {"PrincipalInvestigator": False}
