"""Hermes-style tool calling for models whose chat template ignores ``tools``.

The tool specs go into the system prompt; the model answers with
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks, parsed here into OpenAI
``tool_calls``.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


@dataclass(frozen=True)
class ParsedToolCall:
    """One call the model asked for; ``arguments`` is a JSON-encoded object (OpenAI's format)."""

    id: str
    name: str
    arguments: str


def tools_system_prompt(tools: list[dict[str, Any]]) -> str:
    """The Hermes function-calling instructions listing the request's tools."""
    specs = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return (
        "You are a function calling AI model. You are provided with function signatures within "
        "<tools></tools> XML tags. You may call one or more functions to assist with the user "
        "query. Don't make assumptions about what values to plug into functions.\n"
        f"<tools>\n{specs}\n</tools>\n"
        "For each function call return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags as follows:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-dict>}\n</tool_call>'
    )


def render_tool_calls(calls: list[dict[str, Any]]) -> str:
    """An assistant message's OpenAI ``tool_calls`` as the Hermes text the model would write."""
    blocks = []
    for call in calls:
        function = call.get("function", {})
        arguments: Any = function.get("arguments", "{}")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        payload = json.dumps({"name": function.get("name", ""), "arguments": arguments})
        blocks.append(f"{OPEN}\n{payload}\n{CLOSE}")
    return "\n".join(blocks)


def _first_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (code fences and trailing prose tolerated)."""
    text = _FENCE.sub("", text.strip())
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_tool_calls(
    text: str, known: set[str] | None = None
) -> tuple[str | None, list[ParsedToolCall]]:
    """Split model output into (remaining content, tool calls).

    A block whose JSON does not parse, lacks a string ``name``, or names a tool the request did
    not offer (when ``known`` is given) stays in the content as plain text.
    """
    calls: list[ParsedToolCall] = []
    kept: list[str] = []
    cursor = 0
    for match in _BLOCK.finditer(text):
        payload = _first_object(match.group(1))
        name = payload.get("name") if payload else None
        if not isinstance(name, str) or (known is not None and name not in known):
            continue
        arguments = payload.get("arguments", payload.get("parameters", {})) if payload else {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                arguments = {"input": arguments}
        kept.append(text[cursor : match.start()])
        cursor = match.end()
        calls.append(
            ParsedToolCall(
                id=f"call_{uuid.uuid4().hex[:24]}",
                name=name,
                arguments=json.dumps(
                    arguments if arguments is not None else {}, ensure_ascii=False
                ),
            )
        )
    kept.append(text[cursor:])
    content = "".join(kept).strip()
    return (content or None), calls


def forced_call_prefix(name: str | None) -> str:
    """What the assistant turn starts with when the request forces a (named) tool call."""
    if name is None:
        return f'{OPEN}\n{{"name": "'
    return f'{OPEN}\n{{"name": {json.dumps(name)}, "arguments": {{'
