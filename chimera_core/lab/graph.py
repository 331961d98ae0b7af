"""The lab's LangGraph workflow; node names are role names (routing rules in routing.py).

START fans out to every junior in parallel; a tool-using agent loops agent -> tools -> agent
until it stops calling tools or a bound is hit; the supervisor is deferred until every junior
has finished; then refiner -> designer -> peer review -> safety review -> severity routing
(CRITICAL -> refiner, MAJOR -> designer, else or at the turn limit -> PI) -> END.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ConfigError
from chimera_core.lab import roles
from chimera_core.lab.agents import TOOLS_NODE, make_agent_node, make_supervisor_node, tools_node
from chimera_core.lab.context import LabContext
from chimera_core.lab.routing import Router, route_after_review, tool_route, tools_first
from chimera_core.lab.state import AgentState

SUPERVISOR = "Supervisor"
REFINER = "HypothesisRefiner"
DESIGNER = "ProtocolDesigner"
PEER_REVIEWER = "PeerReviewer"
SAFETY_OFFICER = "SafetyOfficer"
PI = "PrincipalInvestigator"
FIXED_ROLES = (SUPERVISOR, REFINER, DESIGNER, PEER_REVIEWER, SAFETY_OFFICER, PI)
_FIXED_SPECS = {
    REFINER: roles.REFINER,
    DESIGNER: roles.DESIGNER,
    PEER_REVIEWER: roles.PEER_REVIEW,
    SAFETY_OFFICER: roles.SAFETY_REVIEW,
    PI: roles.PI,
}


def role_spec(role: str, config: ChimeraConfig) -> roles.RoleSpec:
    """The output schema and state update of a role that answers in JSON (not the supervisor)."""
    if role in _FIXED_SPECS:
        return _FIXED_SPECS[role]
    if role in config.roles_of_tier("junior"):
        return roles.JUNIOR
    raise ConfigError([f"roles.{role}: no structured output known for this role"])


LabGraph = CompiledStateGraph[AgentState, LabContext, Any, Any]


def check_roles(config: ChimeraConfig) -> list[str]:
    """The junior roles, after checking the config has every role the workflow needs."""
    problems = [f"roles: missing role {name!r}" for name in FIXED_ROLES if name not in config.roles]
    juniors = config.roles_of_tier("junior")
    if not juniors:
        problems.append("roles: the lab needs at least one role of tier 'junior'")
    if problems:
        raise ConfigError(problems, source=f"profile {config.profile}")
    return juniors


def _add_agent(
    graph: StateGraph[Any, Any, Any, Any],
    config: ChimeraConfig,
    role: str,
    spec: roles.RoleSpec,
    after: str | tuple[Router, dict[Hashable, str]],
) -> None:
    """Add a role's node; with tools, its next hop goes through the tool loop first."""
    graph.add_node(role, make_agent_node(role, spec))
    uses_tools = bool(config.roles[role].tools)
    if isinstance(after, str):
        router: Router = tool_route(role)
        path_map: dict[Hashable, str] = {"tools": TOOLS_NODE, "done": after}
        if not uses_tools:
            graph.add_edge(role, after)
            return
    else:
        router, path_map = after
        if uses_tools:
            router = tools_first(role, router)
            path_map = {**path_map, "tools": TOOLS_NODE}
    graph.add_conditional_edges(role, router, path_map)


def build_graph(config: ChimeraConfig) -> LabGraph:
    """Compile the workflow for a config's roles (models and tools are bound per rollout)."""
    juniors = check_roles(config)
    graph = StateGraph(AgentState, context_schema=LabContext)
    for junior in juniors:
        _add_agent(graph, config, junior, roles.JUNIOR, SUPERVISOR)
        graph.add_edge(START, junior)
    # Deferred: runs once, when every junior (whatever the length of its tool loop) is done.
    graph.add_node(SUPERVISOR, make_supervisor_node(SUPERVISOR), defer=True)
    graph.add_edge(SUPERVISOR, REFINER)
    _add_agent(graph, config, REFINER, _FIXED_SPECS[REFINER], DESIGNER)
    _add_agent(graph, config, DESIGNER, _FIXED_SPECS[DESIGNER], PEER_REVIEWER)
    _add_agent(graph, config, PEER_REVIEWER, _FIXED_SPECS[PEER_REVIEWER], SAFETY_OFFICER)
    review_map: dict[Hashable, str] = {
        "critical": REFINER,
        "major": DESIGNER,
        "accept": PI,
        "turn_limit": PI,
    }
    after_review = (route_after_review, review_map)
    _add_agent(graph, config, SAFETY_OFFICER, _FIXED_SPECS[SAFETY_OFFICER], after_review)
    _add_agent(graph, config, PI, _FIXED_SPECS[PI], END)
    tool_users = tuple(r for r in (*juniors, *FIXED_ROLES) if config.roles[r].tools)
    if tool_users:
        graph.add_node(TOOLS_NODE, tools_node, destinations=tool_users)
    return graph.compile(name="chimera-lab")
