"""Role prompts: built from the task, overridable, compact, and the demonstration guard."""

from __future__ import annotations

from chimera_core.lab.prompts import (
    EXAMPLES,
    MAX_CONTEXT_CHARS,
    copied_example,
    demonstration,
    system_prompt,
    user_prompt,
)
from chimera_core.lab.schemas import (
    JuniorResearch,
    PIDecision,
    Protocol,
    RefinedHypothesis,
    SupervisorChoice,
)

STATE = {
    "research_goal": "Is vitamin D status associated with fracture healing?",
    "context": "Serum 25-hydroxyvitamin D was measured in 80 adults with tibial fractures. " * 60,
    "refined_hypothesis": {"refined_hypothesis": "Low vitamin D delays union. " * 100},
    "initial_hypotheses": [
        {"agent_name": "Geneticist", "hypothesis": "VDR variants matter."},
        {"agent_name": "Pharmacologist", "hypothesis": "Supplements speed healing."},
    ],
}


def test_prompts_follow_the_task_not_a_disease() -> None:
    for role, tier in [("Geneticist", "junior"), ("PrincipalInvestigator", "board")]:
        text = system_prompt(role, tier).lower()
        assert "alzheimer" not in text and "research question" in text
    assert "Chemist" in system_prompt("Chemist", "junior")  # any junior name works
    assert system_prompt("Geneticist", "junior", override="Be brief.") == "Be brief."
    prompt = user_prompt(JuniorResearch, STATE, evidence="[pubmed_search] PMID 1: x")
    assert prompt.startswith("Research question: Is vitamin D status associated")
    assert "[pubmed_search] PMID 1: x" in prompt
    assert '"hypothesis"' in prompt and "JSON" in prompt


def test_prompt_inputs_are_clipped() -> None:
    prompt = user_prompt(Protocol, STATE)
    context = prompt.split("Study context:\n")[1].split("\n\nRefined hypothesis")[0]
    assert len(context) <= MAX_CONTEXT_CHARS + 4 and context.endswith("...")
    refined = prompt.split("Refined hypothesis:\n")[1].split("\n\n")[0]
    assert len(refined) < 700 and refined.endswith("...")


def test_each_role_sees_the_inputs_of_its_job() -> None:
    supervisor = user_prompt(SupervisorChoice, STATE)
    assert "0. [Geneticist] VDR variants matter." in supervisor
    assert "1. [Pharmacologist] Supplements speed healing." in supervisor
    refiner = user_prompt(
        RefinedHypothesis, {**STATE, "selected_hypothesis": {"hypothesis": "Supplements help."}}
    )
    assert "Selected hypothesis:\nSupplements help." in refiner
    pi = user_prompt(
        PIDecision,
        {
            **STATE,
            "experimental_protocol": {"title": "T", "steps": ["s"], "budget_usd": 1},
            "peer_review": {"decision": "APPROVE", "critique_severity": "MINOR", "feedback": "ok"},
        },
    )
    assert '"title": "T"' in pi and "PeerReviewer: APPROVE (MINOR): ok" in pi
    assert "expected_decision" not in pi


def test_demonstration_is_on_another_question() -> None:
    ask, answer = demonstration("Neurologist", "junior", JuniorResearch)
    assert "aerobic exercise" in ask and "vitamin D" not in ask
    assert JuniorResearch.model_validate_json(answer).hypothesis == EXAMPLES["junior"]["hypothesis"]


def test_copying_the_demonstration_is_caught_field_by_field() -> None:
    example = EXAMPLES["PrincipalInvestigator"]
    own = PIDecision(final_decision="GO", answer="yes", rationale="The context shows faster union.")
    assert copied_example(own, "PrincipalInvestigator", "board") is None  # labels may agree
    partial = own.model_copy(update={"rationale": example["rationale"]})
    problem = copied_example(partial, "PrincipalInvestigator", "board")
    assert problem is not None and problem.startswith("rationale repeated the example")
    steps = EXAMPLES["ProtocolDesigner"]["steps"]
    protocol = Protocol(title="Own title here", steps=steps, budget_usd=5)
    assert "steps" in (copied_example(protocol, "ProtocolDesigner", "senior") or "")


def test_only_citations_the_agent_was_shown_are_kept() -> None:
    from chimera_core.lab.roles import grounded_citations

    shown = "PMID 11111111: Lace plant leaves form perforations. See the lace plant study."
    cited = ["12345678", "PMID 11111111", "the lace plant study", "x", "99999999 and 11111111"]
    assert grounded_citations(cited, shown) == ["PMID 11111111", "the lace plant study"]
