"""The graph's nodes: agent steps (ReAct with tools), the supervisor, and the shared tools node.

A node asks the rollout's provider for its role's model each time it runs; nothing model-related
is captured when the graph is built.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable
from langgraph.runtime import Runtime
from langgraph.types import Command

from chimera_core.data.agent_outputs import (
    Output,
    SupervisorChoice,
    decoding_budget,
    decoding_schema,
)
from chimera_core.data.output_parsing import ParseResult, T, parse_with_repair
from chimera_core.lab.context import LabContext
from chimera_core.lab.evidence import (
    ToolResult,
    evidence_query,
    format_evidence,
    gather_evidence,
    run_tool,
)
from chimera_core.lab.prompts import (
    copied_example,
    demonstration,
    repair_instructions,
    reviews_text,
    shared_task_message,
    system_prompt,
    user_prompt,
)
from chimera_core.lab.roles import RoleSpec
from chimera_core.lab.state import AgentState
from chimera_core.lab.supervisor_policy import Choice, LLMPolicy
from chimera_core.plugins import Tool

TOOLS_NODE = "tools"
TASK_MESSAGE_ID = "chimera-task"


class Node(Protocol):
    """A graph node: the state in, the runtime (this rollout's bindings) by keyword."""

    def __call__(self, state: AgentState, *, runtime: Runtime[LabContext]) -> Any:
        """Run the node."""
        ...


def tool_schema(tool: Tool) -> dict[str, Any]:
    """The OpenAI function schema of a plugin tool (one free-text ``query`` argument)."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look up."}},
                "required": ["query"],
            },
        },
    }


def _text(message: AIMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(c if isinstance(c, str) else str(c.get("text", "")) for c in content)


class Turn:
    """One node execution: its LLM calls, their usage, new transcript messages and errors."""

    def __init__(self, role: str, tier: str) -> None:
        self.role = role
        self.tier = tier
        self.messages: list[AnyMessage] = []
        self.usage: dict[str, float] = {
            "calls": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "seconds": 0.0,
        }
        self.errors: list[dict[str, str]] = []
        self.valid: bool | None = None
        self.truncated = False

    def call(
        self, model: Runnable[LanguageModelInput, Any], messages: Sequence[AnyMessage]
    ) -> AIMessage:
        """Invoke a model, count the call and its tokens, and name the reply after the role."""
        start = time.perf_counter()
        reply = model.invoke(list(messages))
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=str(getattr(reply, "content", reply)))
        self.usage["seconds"] += time.perf_counter() - start
        self.usage["calls"] += 1
        if meta := reply.usage_metadata:
            self.usage["prompt_tokens"] += meta.get("input_tokens", 0)
            self.usage["completion_tokens"] += meta.get("output_tokens", 0)
        reply.name = self.role
        self.truncated = reply.response_metadata.get("finish_reason") == "length"
        self.messages.append(reply)
        return reply

    def error(self, kind: str, message: str, raw: str = "", name: str = "") -> None:
        """Record a recoverable problem (it lands in the state's ``errors``); ``name``: the tool."""
        entry = {"role": self.role, "kind": kind, "message": message, "raw": raw}
        if name:
            entry["name"] = name
        self.errors.append(entry)

    def ask(
        self,
        model: Runnable[LanguageModelInput, Any],
        conversation: list[AnyMessage],
        reply: AIMessage,
        schema: type[T],
        check: Callable[[T], str | None] | None = None,
    ) -> ParseResult[T]:
        """Parse a reply into ``schema``, with one repair request showing the error."""

        def repair(error: str) -> str:
            ask = HumanMessage(repair_instructions(error, schema), name=self.role)
            self.messages.append(ask)
            # Only the text goes back: a tool call left unanswered would make the chat invalid.
            said = AIMessage(content=_text(reply))
            return _text(self.call(model, [*conversation, said, ask]))

        def full_check(value: T) -> str | None:
            return copied_example(value, self.role, self.tier) or (check(value) if check else None)

        result = parse_with_repair(_text(reply), schema, repair, full_check)
        self.valid = result.ok
        if not result.ok:
            kind = "truncated" if self.truncated else "parse"
            self.error(kind, " | ".join(result.errors), result.raw)
        return result

    def update(self) -> dict[str, Any]:
        """The state update common to every node execution."""
        update: dict[str, Any] = {
            "turn_count": 1,
            "sender": self.role,
            "messages": self.messages,
            "errors": self.errors,
        }
        if self.usage["calls"]:
            update["usage"] = {self.role: self.usage}
        if self.valid is not None:
            update["schema_valid"] = {self.role: self.valid}
            update["truncated"] = {self.role: self.truncated}
        return update


def _answer_model(
    model: BaseChatModel,
    ctx: LabContext,
    schema: type[Output],
    bounds: dict[str, dict[str, Any]] | None = None,
) -> Runnable[LanguageModelInput, Any]:
    """The model for a structured answer: decoded under the role's full schema when asked.

    vLLM's structured outputs constrain every token to the schema (nested arrays included), and
    the completion budget fits the longest answer the schema allows, so a reply is complete
    and valid by construction. Sent as a plain body field: LangChain's own ``response_format``
    path raises on a reply cut at max_tokens, which is recorded as truncated instead.
    """
    if not ctx.json_mode:
        return model
    request = structured_answer_request(schema, bounds)
    return model.bind(
        extra_body={"response_format": request["response_format"]},
        max_tokens=request["max_tokens"],
    )


def structured_answer_request(
    schema: type[Output], bounds: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The request fields of a structured answer: ``response_format`` and ``max_tokens``.

    What the lab sends with every structured answer in JSON mode (``_answer_model``), so a
    caller outside the graph (a replay of a role's recorded prompts) can send the same.
    """
    json_schema = decoding_schema(schema)
    for name, extra in (bounds or {}).items():  # bounds known only now (e.g. how many choices)
        json_schema["properties"][name].update(extra)
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": True},
    }
    return {"response_format": response_format, "max_tokens": decoding_budget(schema)}


def _bind_tools(model: BaseChatModel, tools: list[Tool]) -> Runnable[LanguageModelInput, Any]:
    try:
        return model.bind_tools([tool_schema(t) for t in tools])
    except NotImplementedError:
        # A model class without tool support still gets the evidence in its prompt.
        return model


def _open_visit(
    role: str,
    schema: type[Output],
    revising: bool,
    state: AgentState,
    ctx: LabContext,
    turn: Turn,
) -> tuple[list[AnyMessage], dict[str, Any]]:
    """Start a role's visit: evidence from its tools, then system and user prompts."""
    role_cfg = ctx.config.roles[role]
    extra: dict[str, Any] = {}
    evidence = ""
    if role_cfg.tools:
        results = gather_evidence(
            role_cfg.tools, evidence_query(state), ctx.tools, ctx.tool_context(role)
        )
        for r in results:
            if r.failed:
                turn.error("tool", r.text, name=r.tool)
        evidence = format_evidence(results)
        extra["evidence"] = {role: [r.as_dict() for r in results]}
    if revising:
        extra["revisions"] = [
            {"role": role, "turn": str(state.get("turn_count", 0)), "reviews": reviews_text(state)}
        ]
    task = task_message(state)
    system = SystemMessage(system_prompt(role, role_cfg.tier, role_cfg.prompt))
    ask = HumanMessage(user_prompt(schema, state, evidence, revising), name=role)
    # The task first, identical for every role and call (the server's prefix cache reuses it).
    pad: list[AnyMessage] = [task, system, ask]
    if not ctx.json_mode:
        # Without schema-constrained decoding a worked example teaches the format; with it, a
        # small model only copies the example's prose (measured: the invalid answers left).
        demo_ask, demo_answer = demonstration(role, role_cfg.tier, schema)
        pad[2:2] = [HumanMessage(demo_ask), AIMessage(demo_answer)]
    # The worked example is part of every prompt but not of the transcript (it never changes).
    turn.messages.extend([task, system, ask])
    return pad, extra


def task_message(state: AgentState) -> SystemMessage:
    """The chat's first message: the task, shared by every role of the rollout."""
    text = shared_task_message(state.get("research_goal", ""), state.get("context", ""))
    # One fixed id: ``add_messages`` keeps a single copy in the transcript, not one per visit.
    return SystemMessage(text, id=TASK_MESSAGE_ID)


def make_agent_node(role: str, spec: RoleSpec) -> Node:
    """A role's node: ReAct step with its tools (when it has any), then a structured answer."""

    def node(state: AgentState, *, runtime: Runtime[LabContext]) -> dict[str, Any]:
        ctx = runtime.context
        runtime.stream_writer({"event": "start", "node": role})
        turn = Turn(role, ctx.config.roles[role].tier)
        pad = list(state.get("scratchpads", {}).get(role) or [])
        extra: dict[str, Any] = {}
        if not pad:
            pad, extra = _open_visit(role, spec.schema, spec.revising(state), state, ctx, turn)
        tool_names = ctx.config.roles[role].tools
        rounds = sum(1 for m in pad if isinstance(m, AIMessage) and m.tool_calls)
        may_use_tools = (
            ctx.offers_tools(role)
            and bool(tool_names)
            and rounds < ctx.max_tool_rounds
            and state.get("turn_count", 0) + 1 < ctx.max_turns
        )
        model = ctx.provider.for_role(role)
        tools = [ctx.tools(n) for n in tool_names] if may_use_tools else []
        answer_model = _answer_model(model, ctx, spec.schema)
        reply = turn.call(_bind_tools(model, tools) if tools else answer_model, pad)
        if may_use_tools and reply.tool_calls:
            return {
                **turn.update(),
                **extra,
                "scratchpads": {role: [*pad, reply]},
                "tool_requests": {role: list(reply.tool_calls)},
            }
        result = turn.ask(answer_model, pad, reply, spec.schema)
        # Defaults and citation checks need this visit's evidence, not in the state yet.
        seen = {**state, "evidence": {**state.get("evidence", {}), **extra.get("evidence", {})}}
        value = result.value or spec.default(seen, role, result.prose)
        return {
            **turn.update(),
            **extra,
            **spec.apply(value, seen, role),
            "scratchpads": {role: []},
            "tool_requests": {role: []},
        }

    node.__name__ = role
    return node


def make_supervisor_node(role: str) -> Node:
    """The supervisor: its policy picks a hypothesis, consulting the LLM only if it wants to."""

    def node(state: AgentState, *, runtime: Runtime[LabContext]) -> dict[str, Any]:
        ctx = runtime.context
        runtime.stream_writer({"event": "start", "node": role})
        turn = Turn(role, ctx.config.roles[role].tier)
        hypotheses = list(state.get("initial_hypotheses", []))
        texts = [str(h.get("hypothesis", "")) for h in hypotheses]
        advice: list[Choice] = []

        def advisor() -> Choice:
            if advice:
                return advice[0]
            pad, _ = _open_visit(role, SupervisorChoice, False, state, ctx, turn)
            last = {"selected_index": {"maximum": max(0, len(texts) - 1)}}
            model = _answer_model(ctx.provider.for_role(role), ctx, SupervisorChoice, last)
            reply = turn.call(model, pad)

            def in_range(choice: SupervisorChoice) -> str | None:
                if choice.selected_index < len(texts):
                    return None
                return f"selected_index must be between 0 and {len(texts) - 1}"

            result = turn.ask(model, pad, reply, SupervisorChoice, in_range)
            if result.value is None:
                advice.append(Choice(0, "default: the first hypothesis (no usable choice)", 1.0))
            else:
                advice.append(Choice(result.value.selected_index, result.value.justification, 1.0))
            return advice[0]

        policy = ctx.supervisor_policy or LLMPolicy()
        choice = policy.choose(texts, state, advisor)
        index = choice.selected_index
        if not 0 <= index < len(hypotheses):
            raise ValueError(
                f"supervisor policy {policy.name!r} chose {index} of {len(hypotheses)}"
            )
        return {
            **turn.update(),
            "selected_index": index,
            "selected_hypothesis": hypotheses[index],
            "supervisor_justification": choice.justification,
            "supervisor_probability": choice.probability,
            "supervisor_policy": policy.name,
        }

    node.__name__ = role
    return node


def _query_of(call: dict[str, Any]) -> str:
    args = call.get("args") or {}
    if isinstance(args.get("query"), str):
        return str(args["query"])
    return next((str(v) for v in args.values() if isinstance(v, str)), "")


def tools_node(state: AgentState, *, runtime: Runtime[LabContext]) -> Command[str]:
    """Run every pending tool call and send the results back to the agents that asked."""
    ctx = runtime.context
    pending = {role: calls for role, calls in state.get("tool_requests", {}).items() if calls}
    scratchpads: dict[str, list[AnyMessage]] = {}
    evidence: dict[str, list[dict[str, str]]] = {}
    messages: list[AnyMessage] = []
    errors: list[dict[str, str]] = []
    for role, calls in pending.items():
        allowed = ctx.config.roles[role].tools
        results: list[ToolResult] = []
        replies: list[AnyMessage] = []
        for call in calls:
            name, query = str(call.get("name", "")), _query_of(call)
            runtime.stream_writer({"event": "tool", "node": role, "tool": name, "query": query})
            if name in allowed:
                result = run_tool(name, query, ctx.tools, ctx.tool_context(role))
            else:
                text = f"tool {name!r} is not available to {role} (available: {allowed})"
                result = ToolResult(name, query, text, failed=True)
            if result.failed:
                errors.append(
                    {"role": role, "kind": "tool", "name": name, "message": result.text, "raw": ""}
                )
            results.append(result)
            replies.append(ToolMessage(result.text, tool_call_id=call.get("id") or "", name=name))
        scratchpads[role] = [*state.get("scratchpads", {}).get(role, []), *replies]
        evidence[role] = [
            *state.get("evidence", {}).get(role, []),
            *(r.as_dict() for r in results),
        ]
        messages.extend(replies)
    return Command(
        goto=sorted(pending),
        update={
            "scratchpads": scratchpads,
            "tool_requests": {role: [] for role in pending},
            "evidence": evidence,
            "messages": messages,
            "errors": errors,
        },
    )
