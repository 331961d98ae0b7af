"""Structured outputs of the lab's roles. Agents answer in JSON that validates against these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Decision = Literal["GO", "NO-GO"]
Answer = Literal["yes", "no", "maybe"]
Severity = Literal["CRITICAL", "MAJOR", "MINOR"]


class Output(BaseModel):
    """Base of agent outputs: extra keys from a chatty model are ignored, not fatal."""

    model_config = ConfigDict(extra="ignore")


class JuniorResearch(Output):
    """A junior researcher's hypothesis."""

    hypothesis: str = Field(min_length=1)
    supporting_papers: list[str] = Field(default_factory=list, description="PMIDs or titles.")
    agent_name: str = ""


class SupervisorChoice(Output):
    """Which junior hypothesis the supervisor picked, and why."""

    selected_index: int = Field(ge=0)
    justification: str = ""


class RefinedHypothesis(Output):
    """The senior refiner's testable hypothesis."""

    refined_hypothesis: str = Field(min_length=1)
    rationale: str = ""


class Protocol(Output):
    """An experimental protocol."""

    title: str = Field(min_length=1)
    steps: list[str] = Field(min_length=1)
    safety_concerns: list[str] = Field(default_factory=list)
    budget_usd: float = Field(ge=0)


class ReviewDecision(Output):
    """A review-board verdict; severity routes revisions."""

    decision: Literal["APPROVE", "REVISE"]
    critique_severity: Severity
    feedback: str = ""


class PIDecision(Output):
    """The principal investigator's GO/NO-GO with the answer to the task's question."""

    final_decision: Decision
    answer: Answer
    rationale: str = ""
