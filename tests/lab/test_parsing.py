"""Lenient JSON extraction, schema coercions and the single repair retry."""

from __future__ import annotations

import pytest

from chimera_core.data.agent_outputs import (
    JuniorResearch,
    PIDecision,
    Protocol,
    ReviewDecision,
    SupervisorChoice,
)
from chimera_core.data.output_parsing import (
    OutputError,
    extract_json,
    parse_output,
    parse_with_repair,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Here you go:\n```json\n{"a": 1, "b": [1, 2]}\n```\nHope it helps', {"a": 1, "b": [1, 2]}),
        ('Answer: {"a": "x {not a brace}"} done', {"a": "x {not a brace}"}),
        ("{'a': 'single', 'b': True, 'c': None}", {"a": "single", "b": True, "c": None}),
        ('{"a": 1, "b": [2, 3,],}', {"a": 1, "b": [2, 3]}),
        ('{"a": true, "b": null}', {"a": True, "b": None}),
        ('{"a": "cut off by max_tok', {"a": "cut off by max_tok"}),
        ('{"a": "x", "steps": ["one", "tw', {"a": "x", "steps": ["one", "tw"]}),
        ('{"a": "x", "unfinish', {"a": "x"}),
        ('noise {"a": 1} then {"b": 2}', {"a": 1}),
        ('```\n{"a": "fenced without language"}\n```', {"a": "fenced without language"}),
    ],
)
def test_extract_json_is_lenient(text: str, expected: dict[str, object]) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "no json here", "[1, 2, 3]", "{broken: ::}"])
def test_extract_json_fails_clearly(text: str) -> None:
    with pytest.raises(OutputError):
        extract_json(text)


def test_keys_and_values_are_normalised() -> None:
    review = parse_output(
        '{"Decision": "approve", "Critique Severity": "minor", "feedback": "fine"}',
        ReviewDecision,
    )
    assert (review.decision, review.critique_severity) == ("APPROVE", "MINOR")
    pi = parse_output('{"finalDecision": "no go", "Answer": "No."}', PIDecision)
    assert (pi.final_decision, pi.answer) == ("NO-GO", "no")
    assert parse_output('{"final_decision": "No", "answer": "no"}', PIDecision).final_decision == (
        "NO-GO"
    )
    assert parse_output(
        '{"final_decision": "yes", "answer": "yes"}', PIDecision
    ).final_decision == ("GO")
    choice = parse_output('{"selected_index": "2", "reason": "x"}', SupervisorChoice)
    assert choice.selected_index == 2


def test_protocol_coercions() -> None:
    protocol = parse_output(
        '{"title": "T", "steps": "Do the study", "safety_concerns": null, '
        '"budget_usd": "$1.5 million"}',
        Protocol,
    )
    assert protocol.steps == ["Do the study"]
    assert protocol.safety_concerns == []
    assert protocol.budget_usd == 1_500_000
    assert parse_output('{"title": "T", "steps": ["a"], "budget_usd": "50,000 USD"}', Protocol)
    with pytest.raises(OutputError, match="budget_usd"):
        parse_output('{"title": "T", "steps": ["a"], "budget_usd": "a lot"}', Protocol)
    with pytest.raises(OutputError, match="steps"):
        parse_output('{"title": "T", "steps": [], "budget_usd": 1}', Protocol)


def test_answer_values_outside_the_schema_fail() -> None:
    with pytest.raises(OutputError, match="answer"):
        parse_output('{"final_decision": "GO", "answer": "probably"}', PIDecision)
    with pytest.raises(OutputError, match="hypothesis"):
        parse_output('{"hypothesis": ""}', JuniorResearch)


@pytest.mark.parametrize("decision", ['{"go": true}', '["GO"]', "null", "1"])
def test_a_decision_of_the_wrong_type_is_an_output_error(decision: str) -> None:
    # What a role writes without the decoding schema (GRPO samples freely): a parse failure
    # that scores 0, not a TypeError that stops the trainer.
    with pytest.raises(OutputError, match="final_decision"):
        parse_output(f'{{"final_decision": {decision}, "answer": "yes"}}', PIDecision)


def test_repair_is_asked_once_with_the_error() -> None:
    asked: list[str] = []

    def repair(error: str) -> str:
        asked.append(error)
        return '{"hypothesis": "fixed"}'

    result = parse_with_repair("prose only", JuniorResearch, repair)
    assert result.ok and result.value is not None and result.value.hypothesis == "fixed"
    assert result.attempts == 2 and asked == ["no JSON object found in the reply"]
    assert result.prose == "prose only"

    result = parse_with_repair('{"hypothesis": "ok"}', JuniorResearch, repair)
    assert result.attempts == 1 and len(asked) == 1


def test_repair_failure_keeps_both_errors() -> None:
    result = parse_with_repair("nothing", JuniorResearch, lambda _e: '{"x": 1}')
    assert not result.ok and result.attempts == 2
    assert result.errors[0] == "no JSON object found in the reply"
    assert "hypothesis" in result.errors[1]
    assert result.raw == '{"x": 1}'


def test_check_rejects_a_valid_but_unacceptable_object() -> None:
    def small(choice: SupervisorChoice) -> str | None:
        return None if choice.selected_index < 3 else "selected_index must be below 3"

    result = parse_with_repair(
        '{"selected_index": 5}', SupervisorChoice, lambda _e: '{"selected_index": 1}', small
    )
    assert result.value is not None and result.value.selected_index == 1
    assert result.errors == ["selected_index must be below 3"]


def test_a_protocol_cut_off_in_its_steps_still_parses() -> None:
    cut = '{"title": "T", "budget_usd": 100, "safety_concerns": [], "steps": ["one", "two", "th'
    protocol = parse_output(cut, Protocol)
    assert protocol.steps == ["one", "two", "th"] and protocol.budget_usd == 100
