"""Run one task through the lab, reporting each node as it starts and finishes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig

from chimera_core.config.models import ChimeraConfig
from chimera_core.data.tasks import ResearchTask
from chimera_core.lab.context import DEFAULT_MAX_TOOL_ROUNDS, LabContext, registry_tools
from chimera_core.lab.graph import LabGraph, build_graph
from chimera_core.lab.models import ModelProvider
from chimera_core.lab.state import AgentState, initial_state
from chimera_core.lab.supervisor_policy import SupervisorPolicy
from chimera_core.plugins import Tool

EventKind = Literal["start", "end", "tool"]


@dataclass(frozen=True)
class LabEvent:
    """Progress of a rollout: a node started or finished, or an agent's tool call ran."""

    kind: EventKind
    node: str
    elapsed_s: float
    summary: str = ""
    update: Mapping[str, Any] = field(default_factory=dict)


EventHandler = Callable[[LabEvent], None]


def describe_update(update: Mapping[str, Any]) -> str:
    """One line saying what a node produced, for progress displays."""
    if hyps := update.get("initial_hypotheses"):
        return f"hypothesis: {hyps[-1].get('hypothesis', '')}"
    if "selected_index" in update:
        return f"chose hypothesis {update['selected_index']} ({update.get('supervisor_policy')})"
    if refined := update.get("refined_hypothesis"):
        return f"refined: {refined.get('refined_hypothesis', '')}"
    if protocol := update.get("experimental_protocol"):
        return f"protocol: {protocol.get('title', '')} ({len(protocol.get('steps', []))} steps)"
    for key in ("peer_review", "safety_review"):
        if review := update.get(key):
            return f"{review.get('decision')} / {review.get('critique_severity')}"
    if "final_decision" in update:
        return f"{update['final_decision']}, answer {update.get('final_answer')}"
    if requests := [c for calls in update.get("tool_requests", {}).values() for c in calls]:
        return "calls " + ", ".join(str(c.get("name")) for c in requests)
    if "scratchpads" in update:
        return "tool results returned"
    return ""


def check_tools(config: ChimeraConfig, tools: Callable[[str], Tool]) -> None:
    """Fail before any model call if a role names a tool no plugin registered."""
    for role in config.roles.values():
        for name in role.tools:
            tools(name)


def recursion_limit(max_turns: int, max_tool_rounds: int) -> int:
    """Supersteps a rollout may take: two per turn (agent, tools) plus the juniors' loops."""
    return 4 * (max_turns + max_tool_rounds) + 25


def run_task(
    task: ResearchTask,
    config: ChimeraConfig,
    provider: ModelProvider,
    callbacks: Sequence[BaseCallbackHandler] | None = None,
    *,
    on_event: EventHandler | None = None,
    supervisor_policy: SupervisorPolicy | None = None,
    graph: LabGraph | None = None,
    tools: Callable[[str], Tool] = registry_tools,
    max_turns: int | None = None,
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    json_mode: bool = True,
    offer_tools: bool | None = None,
) -> AgentState:
    """Run the lab on one task and return the final state (tracing ``callbacks`` optional).

    ``json_mode`` asks the endpoint for OpenAI JSON mode on every structured answer (not on
    calls that offer tools); turn it off for an endpoint without ``response_format`` support.
    ``offer_tools`` lets models call their tools (None: per the alias's ``tool_calls``; see
    ``LabContext.offers_tools``); the evidence step runs either way.
    """
    check_tools(config, tools)
    graph = graph or build_graph(config)
    turns = max_turns or config.stages.gather.max_turns
    context = LabContext(
        config=config,
        task=task,
        provider=provider,
        tools=tools,
        supervisor_policy=supervisor_policy,
        max_turns=turns,
        max_tool_rounds=max_tool_rounds,
        json_mode=json_mode,
        offer_tools=offer_tools,
    )
    run_config: RunnableConfig = {
        "callbacks": list(callbacks or []),
        "recursion_limit": recursion_limit(turns, max_tool_rounds),
        "run_name": "chimera-lab",
        "metadata": {"task_id": task.id},
    }
    emit = on_event or (lambda _event: None)
    start = time.perf_counter()
    final: AgentState = initial_state(task)
    for mode, chunk in graph.stream(
        initial_state(task),
        config=run_config,
        context=context,
        stream_mode=["custom", "updates", "values"],
    ):
        elapsed = time.perf_counter() - start
        if mode == "values":
            final = chunk  # type: ignore[assignment]
        elif mode == "custom" and isinstance(chunk, Mapping):
            detail = f"{chunk.get('tool')}: {chunk.get('query')}" if "tool" in chunk else ""
            emit(LabEvent(chunk.get("event", "start"), str(chunk.get("node")), elapsed, detail))
        elif mode == "updates" and isinstance(chunk, Mapping):
            for node, update in chunk.items():
                if not node.startswith("__") and isinstance(update, Mapping):
                    emit(LabEvent("end", node, elapsed, describe_update(update), update))
    return final


def _message_json(message: BaseMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"type": message.type, "content": message.content}
    if message.name:
        data["name"] = message.name
    if tool_calls := getattr(message, "tool_calls", None):
        data["tool_calls"] = tool_calls
    if tool_call_id := getattr(message, "tool_call_id", None):
        data["tool_call_id"] = tool_call_id
    return data


def state_to_json(state: Mapping[str, Any]) -> dict[str, Any]:
    """The final state as plain JSON data (messages as type/name/content records)."""

    def convert(value: Any) -> Any:
        if isinstance(value, BaseMessage):
            return _message_json(value)
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return {key: convert(value) for key, value in state.items()}


def usage_by_role(state: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """LLM calls, tokens and seconds per role, in the order the roles first ran."""
    return {role: dict(counts) for role, counts in (state.get("usage") or {}).items()}
