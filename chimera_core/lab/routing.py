"""Where the graph goes next: tool loops back to the agent, review verdicts to a revision or PI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from langgraph.runtime import Runtime

from chimera_core.lab.context import LabContext
from chimera_core.lab.state import AgentState

ToolRoute = Literal["tools", "done"]
ReviewRoute = Literal["critical", "major", "accept", "turn_limit"]


class Router(Protocol):
    """A conditional edge: the state in, the runtime by keyword, a path-map key out."""

    def __call__(self, state: AgentState, *, runtime: Runtime[LabContext]) -> str:
        """Pick the next hop."""
        ...


def _wants_tools(state: AgentState, role: str) -> bool:
    return bool(state.get("tool_requests", {}).get(role))


def tool_route(role: str) -> Router:
    """After an agent step: to the tools node while the agent has pending calls, else on."""

    def route(state: AgentState, *, runtime: Runtime[LabContext]) -> ToolRoute:
        return "tools" if _wants_tools(state, role) else "done"

    route.__name__ = f"route_{role}"
    return route


def tools_first(role: str, then: Router) -> Router:
    """A router that first serves the agent's pending tool calls, then routes as ``then``."""

    def route(state: AgentState, *, runtime: Runtime[LabContext]) -> str:
        return "tools" if _wants_tools(state, role) else then(state, runtime=runtime)

    route.__name__ = f"route_{role}"
    return route


def review_outcome(state: Mapping[str, Any], max_turns: int) -> ReviewRoute:
    """Any CRITICAL revision request -> refine again; else any MAJOR -> redesign; else the PI."""
    if state.get("turn_count", 0) >= max_turns:
        return "turn_limit"
    reviews = [state.get("peer_review") or {}, state.get("safety_review") or {}]
    severities = {r.get("critique_severity") for r in reviews if r.get("decision") == "REVISE"}
    if "CRITICAL" in severities:
        return "critical"
    if "MAJOR" in severities:
        return "major"
    return "accept"


def route_after_review(state: AgentState, *, runtime: Runtime[LabContext]) -> ReviewRoute:
    """The graph's router after the safety review, bounded by the rollout's turn limit."""
    return review_outcome(state, runtime.context.max_turns)
