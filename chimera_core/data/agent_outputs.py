"""Structured outputs of the lab's roles. Agents answer in JSON that validates against these.

Small models get the shape right more often than the spelling: the ``before`` validators accept
common variants (``"approve"``, ``"No-Go"``, ``"$50,000"``, one string instead of a list) so that
only genuinely unusable answers fail validation.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

INTERNAL = "x-chimera-internal"  # a field the lab fills in, never asked of the model
CHARS_PER_TOKEN = 2  # conservative: 3 cut 1 of 8 protocols (numbers and rare words split finely)
Decision = Literal["GO", "NO-GO"]
Answer = Literal["yes", "no", "maybe"]
Severity = Literal["CRITICAL", "MAJOR", "MINOR"]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_MULTIPLIERS = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "b": 1e9, "billion": 1e9}


def _as_list(value: Any) -> Any:
    """One string where a list was asked for becomes a one-item list; None becomes empty."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [v if isinstance(v, str) else str(v) for v in value if v is not None]
    return value


def _upper_label(value: Any) -> Any:
    """Case and separator variants of an upper-case label: 'no go' -> 'NO-GO'."""
    if isinstance(value, str):
        return re.sub(r"[\s_]+", "-", value.strip()).upper()
    return value


def parse_amount(value: Any) -> Any:
    """'$1.2 million', '50,000 USD', '10k' -> a float; anything else is left to validation."""
    if not isinstance(value, str):
        return value
    text = value.lower().replace(",", "")
    match = _NUMBER.search(text)
    if not match:
        return value
    amount = float(match.group())
    tail = text[match.end() :].strip().split(" ")[0].rstrip(".")
    return amount * _MULTIPLIERS.get(tail, 1.0)


class Output(BaseModel):
    """Base of agent outputs: extra keys from a chatty model are ignored, not fatal."""

    model_config = ConfigDict(extra="ignore")


class JuniorResearch(Output):
    """A junior researcher's hypothesis."""

    hypothesis: str = Field(min_length=1, json_schema_extra={"maxLength": 300})
    supporting_papers: list[str] = Field(
        default_factory=list,
        description="PMIDs or titles.",
        json_schema_extra={"maxItems": 3, "items": {"type": "string", "maxLength": 80}},
    )
    agent_name: str = Field("", json_schema_extra={INTERNAL: True})

    _papers = field_validator("supporting_papers", mode="before")(_as_list)


class SupervisorChoice(Output):
    """Which junior hypothesis the supervisor picked, and why."""

    selected_index: int = Field(ge=0, json_schema_extra={"maximum": 9})
    justification: str = Field("", json_schema_extra={"maxLength": 200})


class RefinedHypothesis(Output):
    """The senior refiner's testable hypothesis."""

    refined_hypothesis: str = Field(min_length=1, json_schema_extra={"maxLength": 300})
    rationale: str = Field("", json_schema_extra={"maxLength": 200})


class Protocol(Output):
    """An experimental protocol."""

    title: str = Field(min_length=1, json_schema_extra={"maxLength": 80})
    steps: list[str] = Field(
        min_length=1,
        json_schema_extra={"maxItems": 4, "items": {"type": "string", "maxLength": 120}},
    )
    safety_concerns: list[str] = Field(
        default_factory=list,
        json_schema_extra={"maxItems": 2, "items": {"type": "string", "maxLength": 100}},
    )
    budget_usd: float = Field(ge=0, json_schema_extra={"maximum": 50_000_000})

    _lists = field_validator("steps", "safety_concerns", mode="before")(_as_list)
    _budget = field_validator("budget_usd", mode="before")(parse_amount)


class ReviewDecision(Output):
    """A review-board verdict; severity routes revisions."""

    decision: Literal["APPROVE", "REVISE"]
    critique_severity: Severity
    feedback: str = Field("", json_schema_extra={"maxLength": 300})

    _labels = field_validator("decision", "critique_severity", mode="before")(_upper_label)


class PIDecision(Output):
    """The principal investigator's GO/NO-GO with the answer to the task's question."""

    final_decision: Decision
    answer: Answer
    rationale: str = Field("", json_schema_extra={"maxLength": 300})

    @field_validator("final_decision", mode="before")
    @classmethod
    def _decision_label(cls, value: Any) -> Any:
        # A yes/no answer given as the decision is the obvious GO/NO-GO.
        label = _upper_label(value)
        if not isinstance(label, str):  # a list or object (unconstrained sampling): invalid
            return label
        return {"YES": "GO", "NO": "NO-GO", "NOGO": "NO-GO"}.get(label, label)

    @field_validator("answer", mode="before")
    @classmethod
    def _lower_answer(cls, value: Any) -> Any:
        # 'Yes.', '"no"', 'Maybe!' -> the bare label.
        return value.strip().lower().strip(" .!\"'") if isinstance(value, str) else value


def decoding_schema(schema: type[Output]) -> dict[str, Any]:
    """The JSON schema a role's answer is decoded under: every field required, bounded.

    Strings and arrays carry the maxLength/maxItems bounds above (for decoding only; parsing
    accepts longer values), so a complete answer always fits ``decoding_budget`` tokens.
    """
    full = schema.model_json_schema()
    properties = {
        name: {k: v for k, v in prop.items() if k not in ("title", "default", INTERNAL)}
        for name, prop in full["properties"].items()
        if not prop.get(INTERNAL)
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def decoding_budget(schema: type[Output]) -> int:
    """Completion tokens that fit the longest answer ``decoding_schema`` allows."""
    chars = 2
    for name, prop in decoding_schema(schema)["properties"].items():
        chars += len(name) + 4
        if prop.get("type") == "array":
            item = prop.get("items", {})
            chars += 2 + int(prop.get("maxItems", 1)) * (int(item.get("maxLength", 40)) + 3)
        elif prop.get("type") == "string":
            chars += int(prop.get("maxLength", 40)) + 2
        else:  # numbers, enums
            chars += 16
    return chars // CHARS_PER_TOKEN + 8
