"""What each role produces: its output schema, how the output lands in the state, its safe default.

Defaults are deliberately unambitious and say what happened, so a failed role is visible in the
state (and scored low) rather than disguised: a failed review neither blocks nor approves, a
failed designer keeps the previous protocol, a failed PI says NO-GO / maybe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chimera_core.data.agent_outputs import (
    JuniorResearch,
    Output,
    PIDecision,
    Protocol,
    RefinedHypothesis,
    ReviewDecision,
)

State = Mapping[str, Any]
Apply = Callable[[Output, State, str], dict[str, Any]]
Default = Callable[[State, str, str], Output]  # (state, role, the model's prose if any)

MAX_SALVAGED_CHARS = 400
_PMID = re.compile(r"\b\d{6,9}\b")


@dataclass(frozen=True)
class RoleSpec:
    """How one role's structured answer is asked for, stored and defaulted."""

    schema: type[Output]
    apply: Apply
    default: Default

    def revising(self, state: State) -> bool:
        """A senior visited again after a review is revising; everyone else starts fresh."""
        return self.schema in (RefinedHypothesis, Protocol) and bool(state.get("safety_review"))


def _salvage(prose: str) -> str:
    """Prose the model wrote instead of JSON, kept when it is all there is."""
    text = " ".join(prose.replace("```", " ").split())
    return text[:MAX_SALVAGED_CHARS]


def grounded_citations(papers: list[str], sources: str) -> list[str]:
    """The cited papers that the role was shown: a PMID in its evidence, or quoted text."""
    shown = sources.lower()
    kept = []
    for paper in papers:
        pmids = _PMID.findall(paper)
        text = paper.strip().lower()
        if (pmids and all(p in shown for p in pmids)) or (len(text) >= 12 and text in shown):
            kept.append(paper)
    return kept


def _junior_apply(out: Output, state: State, role: str) -> dict[str, Any]:
    assert isinstance(out, JuniorResearch)
    # A citation the agent was never shown (or the demonstration's) is dropped, not kept.
    sources = " ".join(
        [state.get("context", "")]
        + [item.get("result", "") for item in state.get("evidence", {}).get(role, [])]
    )
    papers = grounded_citations(out.supporting_papers, sources)
    hypothesis = out.model_copy(update={"agent_name": role, "supporting_papers": papers})
    return {"initial_hypotheses": [hypothesis.model_dump()]}


def _junior_default(state: State, role: str, prose: str) -> Output:
    papers = [
        line.split(":", 1)[0].removeprefix("PMID ").strip()
        for item in state.get("evidence", {}).get(role, [])
        for line in item.get("result", "").splitlines()
        if line.startswith("PMID ")
    ]
    return JuniorResearch(
        hypothesis=_salvage(prose) or f"(no usable hypothesis from {role})",
        supporting_papers=list(dict.fromkeys(papers)),
        agent_name=role,
    )


def _refiner_apply(out: Output, state: State, role: str) -> dict[str, Any]:
    return {"refined_hypothesis": out.model_dump()}


def _refiner_default(state: State, role: str, prose: str) -> Output:
    selected = (state.get("selected_hypothesis") or {}).get("hypothesis") or state.get(
        "research_goal", "(no hypothesis)"
    )
    return RefinedHypothesis(
        refined_hypothesis=selected, rationale="unrefined: the refiner's output was unusable"
    )


def _designer_apply(out: Output, state: State, role: str) -> dict[str, Any]:
    return {"experimental_protocol": out.model_dump()}


def _designer_default(state: State, role: str, prose: str) -> Output:
    if previous := state.get("experimental_protocol"):
        return Protocol.model_validate(previous)
    return Protocol(
        title="No valid protocol (the designer's output was unusable)",
        steps=["No protocol steps were produced; see the rollout's errors."],
        safety_concerns=[],
        budget_usd=0.0,
    )


def _review_apply(key: str) -> Apply:
    def apply(out: Output, state: State, role: str) -> dict[str, Any]:
        return {key: out.model_dump()}

    return apply


def _review_default(state: State, role: str, prose: str) -> Output:
    return ReviewDecision(
        decision="REVISE",
        critique_severity="MINOR",
        feedback=f"no usable review from {role}",
    )


def _pi_apply(out: Output, state: State, role: str) -> dict[str, Any]:
    assert isinstance(out, PIDecision)
    return {
        "final_protocol": dict(state.get("experimental_protocol") or {}),
        "final_decision": out.final_decision,
        "final_answer": out.answer,
        "final_rationale": out.rationale,
    }


def _pi_default(state: State, role: str, prose: str) -> Output:
    return PIDecision(
        final_decision="NO-GO",
        answer="maybe",
        rationale="no usable decision from the principal investigator",
    )


JUNIOR = RoleSpec(JuniorResearch, _junior_apply, _junior_default)
REFINER = RoleSpec(RefinedHypothesis, _refiner_apply, _refiner_default)
DESIGNER = RoleSpec(Protocol, _designer_apply, _designer_default)
PEER_REVIEW = RoleSpec(ReviewDecision, _review_apply("peer_review"), _review_default)
SAFETY_REVIEW = RoleSpec(ReviewDecision, _review_apply("safety_review"), _review_default)
PI = RoleSpec(PIDecision, _pi_apply, _pi_default)
