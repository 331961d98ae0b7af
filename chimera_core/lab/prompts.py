"""Role prompts, built from the task's own question and context (no disease is hard-wired).

Every chat starts with the same system message for all roles of a task (a lab preamble and the
task block, see ``shared_task_message``) so a server's prefix cache reuses it; the role's system
prompt (replaceable with ``roles[name].prompt``), a worked example and the role's own request
follow. The JSON format instructions are always in the request, so an override cannot break
parsing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from chimera_core.data.agent_outputs import (
    JuniorResearch,
    PIDecision,
    Protocol,
    RefinedHypothesis,
    ReviewDecision,
    SupervisorChoice,
)

MAX_CONTEXT_CHARS = 2400
# Earlier agents' outputs are quoted to later ones; a rambling one must not crowd the prompt.
MAX_QUOTED_CHARS = 600
MAX_PROTOCOL_CHARS = 1500

SPECIALTIES = {
    "Geneticist": "genetics, molecular and cellular mechanisms",
    "Pharmacologist": "drugs and other interventions, dosing, and clinical trials",
    "Neurologist": "clinical presentation, the nervous system, and patient outcomes",
}

# Role-neutral on purpose: with the task block it forms the first message of every chat.
LAB_PREAMBLE = (
    "This conversation is part of the work of a biomedical research lab on one research "
    "question. Junior researchers propose hypotheses, a supervisor selects one, senior "
    "scientists refine it and design a protocol, a review board reviews the protocol, and the "
    "principal investigator decides. The research question and its study context follow; your "
    "role, your instructions and the answer format come after them."
)
DEMO_INTRO = "A worked example on a different research question, to show the answer format:"
REAL_TASK_INTRO = (
    "Now the real task: work on the research question given at the start of this chat, with "
    "its study context (not the example's)."
)

SYSTEM_PROMPTS = {
    "junior": (
        "You are {role}, a junior researcher in a biomedical research lab; your lens is {lens}. "
        "Read the research question and the study context, weigh the evidence, and propose one "
        "testable hypothesis that answers the question. Cite supporting papers by PMID."
    ),
    "Supervisor": (
        "You supervise the junior researchers of a biomedical research lab. Pick the hypothesis "
        "that best answers the research question, is best supported by the study context, and "
        "is most testable."
    ),
    "HypothesisRefiner": (
        "You are a senior scientist. Turn the selected hypothesis into one precise, testable "
        "hypothesis: name the population, the exposure or intervention, the comparison and the "
        "outcome, and keep to what the study context supports."
    ),
    "ProtocolDesigner": (
        "You are a senior scientist who designs experiments. Write a concrete protocol that "
        "tests the refined hypothesis: ordered steps, safety concerns, and a realistic budget "
        "in US dollars."
    ),
    "PeerReviewer": (
        "You are a peer reviewer on the lab's review board; judge scientific rigor. Severity: "
        "CRITICAL if the hypothesis itself is wrong or unsupported by the context, MAJOR if the "
        "protocol design has a serious flaw, MINOR for small issues. APPROVE a sound protocol."
    ),
    "SafetyOfficer": (
        "You are the lab's safety officer; judge risks to participants, staff and the "
        "environment, and ethics. Severity: CRITICAL if the study should not be done as "
        "conceived, MAJOR if the protocol needs safety changes, MINOR for small issues. APPROVE "
        "a safe protocol."
    ),
    "PrincipalInvestigator": (
        "You are the principal investigator. From the study context, the protocol and the "
        "reviews, decide GO or NO-GO for the study, and answer the research question with yes, "
        "no or maybe as the study context supports it."
    ),
}

# One worked example, shown to every role as a previous turn of the chat before its real task:
# tiny models copy an inline example verbatim, but follow a demonstration on another question.
DEMO_STATE: dict[str, Any] = {
    "research_goal": "Does regular aerobic exercise lower resting blood pressure in adults with "
    "hypertension?",
    "context": "In a 12-week trial, 120 adults with stage 1 hypertension were randomised to "
    "supervised aerobic exercise or usual care. Resting systolic blood pressure fell by 6 mmHg "
    "more in the exercise group; no serious adverse events occurred.",
    "initial_hypotheses": [
        {
            "agent_name": "Geneticist",
            "hypothesis": "Variants of renin-angiotensin genes change how much blood pressure "
            "falls with exercise.",
        },
        {
            "agent_name": "Pharmacologist",
            "hypothesis": "Supervised aerobic exercise lowers resting systolic blood pressure in "
            "adults with stage 1 hypertension.",
        },
        {
            "agent_name": "Neurologist",
            "hypothesis": "Exercise lowers blood pressure by reducing sympathetic nerve activity.",
        },
    ],
    "selected_hypothesis": {
        "hypothesis": "Supervised aerobic exercise lowers resting systolic blood pressure in "
        "adults with stage 1 hypertension."
    },
    "supervisor_justification": "It answers the question directly and the trial supports it.",
    "refined_hypothesis": {
        "refined_hypothesis": "In adults with stage 1 hypertension, 12 weeks of supervised "
        "aerobic exercise lowers resting systolic blood pressure more than usual care."
    },
    # Long lists last: a reply cut off at max_tokens then loses steps, not the budget.
    "experimental_protocol": {
        "title": "Randomised trial of aerobic exercise for stage 1 hypertension",
        "budget_usd": 300000,
        "safety_concerns": ["Screen for cardiac contraindications before exercise"],
        "steps": [
            "Recruit 200 adults with stage 1 hypertension",
            "Randomise them to supervised aerobic exercise or usual care for 12 weeks",
            "Measure resting blood pressure at baseline and at week 12",
            "Compare the change in systolic pressure between the groups",
        ],
    },
    "peer_review": {
        "decision": "APPROVE",
        "critique_severity": "MINOR",
        "feedback": "Sound randomised design; say how blood pressure is measured.",
    },
    "safety_review": {
        "decision": "APPROVE",
        "critique_severity": "MINOR",
        "feedback": "Screen participants for cardiac contraindications before exercise.",
    },
}

# What a search result looks like in the demonstration (an illustrative, made-up record).
DEMO_EVIDENCE = (
    '[pubmed_search] PubMed, top 1 for "aerobic exercise blood pressure":\n'
    "PMID 12345678: Aerobic training lowered resting blood pressure in adults with hypertension."
)

EXAMPLES: dict[str, dict[str, Any]] = {
    "junior": {
        "hypothesis": "Regular aerobic exercise lowers resting systolic blood pressure in adults "
        "with stage 1 hypertension.",
        "supporting_papers": ["12345678"],
    },
    "Supervisor": {
        "selected_index": 1,
        "justification": DEMO_STATE["supervisor_justification"],
    },
    "HypothesisRefiner": {
        **DEMO_STATE["refined_hypothesis"],
        "rationale": "Names the population, intervention, comparison, outcome and time frame.",
    },
    "ProtocolDesigner": DEMO_STATE["experimental_protocol"],
    "PeerReviewer": DEMO_STATE["peer_review"],
    "SafetyOfficer": DEMO_STATE["safety_review"],
    "PrincipalInvestigator": {
        "final_decision": "GO",
        "answer": "yes",
        "rationale": "The trial in the context found a 6 mmHg larger fall in systolic pressure "
        "with exercise.",
    },
}

KEY_HELP: dict[type[BaseModel], str] = {
    JuniorResearch: '"hypothesis" (one sentence), "supporting_papers" (list of PMIDs)',
    SupervisorChoice: '"selected_index" (number of the chosen hypothesis), "justification"',
    RefinedHypothesis: '"refined_hypothesis" (one testable sentence), "rationale"',
    Protocol: '"title", "budget_usd" (number), "safety_concerns" (list of strings), '
    '"steps" (list of strings)',
    ReviewDecision: '"decision" (APPROVE or REVISE), "critique_severity" (CRITICAL, MAJOR or '
    'MINOR), "feedback"',
    PIDecision: '"final_decision" (GO or NO-GO), "answer" (yes, no or maybe), "rationale"',
}


def system_prompt(role: str, tier: str, override: str | None = None) -> str:
    """The role's built-in system prompt, or the config's override."""
    if override:
        return override
    if tier == "junior":
        lens = SPECIALTIES.get(role, f"the expertise of a {role}")
        return SYSTEM_PROMPTS["junior"].format(role=role, lens=lens)
    return SYSTEM_PROMPTS.get(role, f"You are the {role} of a biomedical research lab.")


def example_for(role: str, tier: str) -> dict[str, Any]:
    """The demonstration answer of a role (juniors share one)."""
    return EXAMPLES["junior" if tier == "junior" else role]


def format_instructions(schema: type[BaseModel]) -> str:
    """How to answer: one JSON object with the schema's keys."""
    return f"Reply with only one JSON object and no other text. Keys: {KEY_HELP[schema]}."


def repair_instructions(error: str, schema: type[BaseModel]) -> str:
    """The follow-up message after an unusable reply: the error and the format again."""
    return f"Your reply could not be used: {error}.\n{format_instructions(schema)}"


def demonstration(role: str, tier: str, schema: type[BaseModel]) -> tuple[str, str]:
    """The worked example: the user message of the demo question and the answer to it."""
    evidence = DEMO_EVIDENCE if schema is JuniorResearch else ""
    # The demo carries its own question and context: the chat's first message holds the real one.
    ask = "\n\n".join(
        [
            DEMO_INTRO,
            task_block(DEMO_STATE["research_goal"], DEMO_STATE["context"]),
            *_request(schema, DEMO_STATE, evidence),
        ]
    )
    return ask, json.dumps(example_for(role, tier))


# Citations are checked against the evidence instead (see roles.grounded_citations).
COPY_EXEMPT = frozenset({"supporting_papers"})


def copied_example(value: BaseModel, role: str, tier: str) -> str | None:
    """A problem message when a free-text field repeats the demonstration's answer verbatim.

    Labels (GO, yes, MINOR, an index, a budget) may coincide; prose and lists may not.
    """
    answer = value.model_dump()
    copied = [
        key
        for key, shown in example_for(role, tier).items()
        if key not in COPY_EXEMPT
        and isinstance(shown, str | list)
        and len(str(shown)) > 20
        and answer.get(key) == shown
    ]
    if copied:
        return (
            f"{', '.join(copied)} repeated the example's answer; "
            "answer the research question given at the start of this chat"
        )
    return None


def clip(text: str, limit: int) -> str:
    """Cut text at a word boundary, marking the cut."""
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def task_block(goal: str, context: str) -> str:
    """The research question and the (length-capped) study context."""
    return f"Research question: {goal}\n\nStudy context:\n{clip(context, MAX_CONTEXT_CHARS)}"


def shared_task_message(goal: str, context: str) -> str:
    """Every chat's first (system) message on a task, the same for all roles and the judge.

    It depends on nothing but the task, so a prefix cache reuses it across roles and calls.
    """
    return f"{LAB_PREAMBLE}\n\n{task_block(goal, context)}"


def _section(title: str, body: str, limit: int = MAX_QUOTED_CHARS) -> str:
    return f"{title}:\n{clip(body.strip(), limit)}" if body.strip() else ""


def _as_json(obj: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(obj), ensure_ascii=False) if obj else ""


def numbered_hypotheses(hypotheses: Sequence[Mapping[str, Any]]) -> str:
    """Hypotheses as '0. [agent] text' lines, numbered from 0 as the supervisor must answer."""
    return "\n".join(
        f"{i}. [{h.get('agent_name') or 'junior'}] {h.get('hypothesis', '')}"
        for i, h in enumerate(hypotheses)
    )


def reviews_text(state: Mapping[str, Any]) -> str:
    """The latest review-board verdicts, one line each."""
    lines = []
    for who, key in (("PeerReviewer", "peer_review"), ("SafetyOfficer", "safety_review")):
        if review := state.get(key):
            lines.append(
                f"{who}: {review.get('decision')} ({review.get('critique_severity')}): "
                f"{review.get('feedback', '')}"
            )
    return "\n".join(lines)


def user_prompt(
    schema: type[BaseModel],
    state: Mapping[str, Any],
    evidence: str = "",
    revising: bool = False,
) -> str:
    """A role's request on the task of the chat's first message: inputs, evidence, answer format."""
    # Only the question is restated (the context is not): it points a small model back to the
    # task, past the demonstration's question.
    goal = f"{REAL_TASK_INTRO}\nResearch question: {state.get('research_goal', '')}"
    return "\n\n".join([goal, *_request(schema, state, evidence, revising)])


def _request(
    schema: type[BaseModel],
    state: Mapping[str, Any],
    evidence: str = "",
    revising: bool = False,
) -> list[str]:
    """The inputs a role's job needs, its evidence and the answer format (non-empty parts)."""
    parts: list[str] = []
    selected = state.get("selected_hypothesis") or {}
    refined = (state.get("refined_hypothesis") or {}).get("refined_hypothesis", "")
    protocol = state.get("experimental_protocol")
    if schema is SupervisorChoice:
        hypotheses = [
            {**h, "hypothesis": clip(str(h.get("hypothesis", "")), MAX_QUOTED_CHARS)}
            for h in state.get("initial_hypotheses", [])
        ]
        parts.append(_section("Hypotheses", numbered_hypotheses(hypotheses), MAX_PROTOCOL_CHARS))
    elif schema is RefinedHypothesis:
        parts.append(_section("Selected hypothesis", selected.get("hypothesis", "")))
        parts.append(_section("Why it was selected", state.get("supervisor_justification", "")))
    elif schema is Protocol:
        parts.append(_section("Refined hypothesis", refined))
    elif schema in (ReviewDecision, PIDecision):
        parts.append(_section("Refined hypothesis", refined))
        parts.append(_section("Protocol", _as_json(protocol), MAX_PROTOCOL_CHARS))
    if revising:
        revision = reviews_text(state)
        parts.append(
            _section("The review board asked for a revision", revision, 2 * MAX_QUOTED_CHARS)
        )
        if schema is Protocol:
            parts.append(_section("Your previous protocol", _as_json(protocol), MAX_PROTOCOL_CHARS))
    if schema is PIDecision:
        parts.append(_section("Reviews", reviews_text(state), 2 * MAX_QUOTED_CHARS))
    parts.append(_section("Evidence retrieved for you", evidence, len(evidence)))
    parts.append(format_instructions(schema))
    return [p for p in parts if p]
