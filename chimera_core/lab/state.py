"""The lab's shared state: one typed dict, with reducers where parallel nodes write the same key."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, TypedDict, TypeVar

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from chimera_core.data.tasks import ResearchTask

V = TypeVar("V")


def last_value(_old: V | None, new: V) -> V:
    """Keep the newest write; unlike a plain key, parallel writes in one step are allowed."""
    return new


def merge_by_key(old: Mapping[str, V] | None, new: Mapping[str, V]) -> dict[str, V]:
    """Per-key replace: parallel agents each own their key (scratchpads, tool requests)."""
    return {**(old or {}), **new}


def merge_all(old: Mapping[str, bool] | None, new: Mapping[str, bool]) -> dict[str, bool]:
    """Per-role AND: a role stays schema-valid only if every one of its outputs parsed."""
    merged = dict(old or {})
    for key, value in new.items():
        merged[key] = merged.get(key, True) and value
    return merged


def add_usage(
    old: Mapping[str, Mapping[str, float]] | None, new: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Per-role sums of LLM usage counters (calls, tokens, seconds)."""
    merged = {role: dict(counts) for role, counts in (old or {}).items()}
    for role, counts in new.items():
        into = merged.setdefault(role, {})
        for name, value in counts.items():
            into[name] = into.get(name, 0) + value
    return merged


def add_hypotheses(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Append juniors' hypotheses; a junior that answers again replaces its earlier one."""
    merged = list(old or [])
    for hyp in new:
        name = hyp.get("agent_name")
        merged = [h for h in merged if not name or h.get("agent_name") != name]
        merged.append(hyp)
    return merged


class AgentState(TypedDict, total=False):
    """Master state of one rollout. Sub-records are plain dicts of the ``schemas`` models."""

    # The transcript: every prompt, reply and tool result, in order.
    messages: Annotated[list[AnyMessage], add_messages]
    task_id: str
    research_goal: str
    context: str
    # The agent that acted last; tool results go back to the agents that asked.
    sender: Annotated[str, last_value]
    # Agent steps taken so far (tool loop iterations included; repair retries not).
    turn_count: Annotated[int, operator.add]
    initial_hypotheses: Annotated[list[dict[str, Any]], add_hypotheses]
    selected_index: int
    selected_hypothesis: dict[str, Any]
    supervisor_justification: str
    supervisor_probability: float
    supervisor_policy: str
    refined_hypothesis: dict[str, Any]
    experimental_protocol: dict[str, Any]
    peer_review: dict[str, Any]
    safety_review: dict[str, Any]
    revisions: Annotated[list[dict[str, str]], operator.add]
    final_protocol: dict[str, Any]
    final_decision: str
    final_answer: str
    final_rationale: str
    # Written by the reward step after the lab finished, never by the lab itself.
    final_evaluation: dict[str, Any]
    evidence: Annotated[dict[str, list[dict[str, str]]], merge_by_key]
    # The running conversation of an agent inside its tool loop; emptied when it answers.
    scratchpads: Annotated[dict[str, list[AnyMessage]], merge_by_key]
    tool_requests: Annotated[dict[str, list[dict[str, Any]]], merge_by_key]
    usage: Annotated[dict[str, dict[str, float]], add_usage]
    schema_valid: Annotated[dict[str, bool], merge_all]
    # Roles whose answer was cut at the token budget (told apart from malformed answers).
    truncated: Annotated[dict[str, bool], merge_all]
    errors: Annotated[list[dict[str, str]], operator.add]


def initial_state(task: ResearchTask) -> AgentState:
    """The state a rollout starts from: only what an agent may see of the task."""
    view = task.agent_view()
    return AgentState(
        messages=[],
        task_id=view["id"],
        research_goal=view["goal"],
        context=view["context"],
        turn_count=0,
        initial_hypotheses=[],
        revisions=[],
        evidence={},
        scratchpads={},
        tool_requests={},
        usage={},
        schema_valid={},
        truncated={},
        errors=[],
    )
