"""Role prompts: built from the task, overridable, compact, cache-friendly, the demo guard."""

from __future__ import annotations

from chimera_core.data.agent_outputs import (
    JuniorResearch,
    PIDecision,
    Protocol,
    RefinedHypothesis,
    SupervisorChoice,
)
from chimera_core.lab.prompts import (
    EXAMPLES,
    MAX_CONTEXT_CHARS,
    copied_example,
    demonstration,
    shared_task_message,
    system_prompt,
    user_prompt,
)

GOAL = "Is vitamin D status associated with fracture healing?"
CONTEXT = "Serum 25-hydroxyvitamin D was measured in 80 adults with tibial fractures. " * 60
STATE = {
    "research_goal": GOAL,
    "context": CONTEXT,
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
    assert "[pubmed_search] PMID 1: x" in prompt
    assert '"hypothesis"' in prompt and "JSON" in prompt


def test_task_comes_first_in_one_role_neutral_message() -> None:
    shared = shared_task_message(GOAL, CONTEXT)
    assert "Research question: Is vitamin D status associated" in shared
    assert "Study context:\nSerum 25-hydroxyvitamin D" in shared
    # Nothing of any role: the same text opens every role's chat.
    for role in [*EXAMPLES, "Geneticist", "Neurologist", "Pharmacologist"]:
        assert role not in shared
    assert shared == shared_task_message(GOAL, CONTEXT)
    # The role's request points back to that question instead of repeating the context.
    prompt = user_prompt(JuniorResearch, STATE)
    assert "given at the start of this chat" in prompt and "not the example's" in prompt
    assert f"Research question: {GOAL}" in prompt
    assert "Study context" not in prompt and "Serum 25-hydroxyvitamin D" not in prompt


def test_prompt_inputs_are_clipped() -> None:
    shared = shared_task_message(GOAL, CONTEXT)
    context = shared.split("Study context:\n")[1]
    assert len(context) <= MAX_CONTEXT_CHARS + 4 and context.endswith("...")
    prompt = user_prompt(Protocol, STATE)
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
    # It brings its own question and context, marked as an example, and the same answer format.
    assert ask.startswith("A worked example on a different research question")
    assert "Study context:\nIn a 12-week trial" in ask
    assert ask.endswith(user_prompt(JuniorResearch, STATE).rsplit("\n\n", 1)[1])
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
