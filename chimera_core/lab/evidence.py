"""Retrieved evidence placed in an agent's prompt, because small models cannot call tools.

At the start of each visit a tool-using agent gets the results of every tool of its role, run on
a query made from what it is working on. Each tool run is a named runnable, so tool calls show
up in traces whether the retrieval was this step's or a model's own tool call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableLambda

from chimera_core.lab.prompts import clip
from chimera_core.plugins import Tool, ToolContext, get_registry

MAX_RESULT_CHARS = 700


@dataclass(frozen=True)
class ToolResult:
    """One tool run: what was asked, the text returned, and whether the tool failed."""

    tool: str
    query: str
    text: str
    failed: bool = False

    def as_dict(self) -> dict[str, str]:
        """JSON-friendly form for the state."""
        return {"tool": self.tool, "query": self.query, "result": self.text}


def run_tool(name: str, query: str, lookup: Callable[[str], Tool], ctx: ToolContext) -> ToolResult:
    """Run one tool as a traced step; a failing tool gives an error text, never an exception."""
    try:
        tool = lookup(name)
        step: RunnableLambda[str, str] = RunnableLambda(lambda q: tool.run(q, ctx), name=name)
        return ToolResult(name, query, str(step.invoke(query)))
    except Exception as exc:
        text = f"{name} failed: {type(exc).__name__}: {exc} [{tool_origin(name)}]"
        return ToolResult(name, query, text, failed=True)


def tool_origin(name: str) -> str:
    """The plugin and package that registered a tool, so a failure names who to ask."""
    try:
        return get_registry().origin("tool", name)
    except Exception:  # a broken plugin set must not turn a tool failure into a crash
        return "plugin unknown"


def evidence_query(state: Mapping[str, Any]) -> str:
    """The question, sharpened by the latest hypothesis once there is one."""
    goal = state.get("research_goal", "")
    refined = (state.get("refined_hypothesis") or {}).get("refined_hypothesis")
    selected = (state.get("selected_hypothesis") or {}).get("hypothesis")
    focus = refined or selected
    return f"{goal} {focus}" if focus else goal


def gather_evidence(
    tools: Sequence[str], query: str, lookup: Callable[[str], Tool], ctx: ToolContext
) -> list[ToolResult]:
    """Run each of the role's tools on the query, in one traced 'evidence' step."""

    def _all(q: str) -> list[ToolResult]:
        return [run_tool(name, q, lookup, ctx) for name in tools]

    results: list[ToolResult] = RunnableLambda(_all, name="evidence").invoke(query)
    return results


def format_evidence(results: Sequence[ToolResult]) -> str:
    """Evidence as prompt text: one block per tool, clipped to keep prompts small."""
    return "\n\n".join(f"[{r.tool}] {clip(r.text, MAX_RESULT_CHARS)}" for r in results)
