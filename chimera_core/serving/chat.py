"""From a chat-completions request to a prompt and per-choice sampling settings, within limits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chimera_core.config.models import EmbeddedServerConfig
from chimera_core.serving.json_constraint import repair_json
from chimera_core.serving.protocol import ApiError, ChatCompletionRequest, NamedToolChoice
from chimera_core.serving.sampling import SamplingParams
from chimera_core.serving.schema_constraint import compile_flat_schema
from chimera_core.serving.tokens import TokenCodec
from chimera_core.serving.tool_calls import (
    CLOSE,
    OPEN,
    forced_call_prefix,
    render_tool_calls,
    tools_system_prompt,
)

JSON_HINT = "Respond with a single JSON object and nothing else."


@dataclass
class PromptPlan:
    """Everything needed to generate and then shape the reply of one request."""

    prompt_ids: list[int]
    params: list[SamplingParams]
    prefix: str = ""  # assistant text already in the prompt (a forced tool call's opening)
    tool_names: frozenset[str] | None = None  # parse tool calls when the request offered tools
    json_mode: bool = False

    def full_text(self, generated: str) -> str:
        """The whole reply: prompt-side prefix plus generated text, JSON closed if it was cut."""
        if self.prefix.startswith(OPEN):
            body = self.prefix.removeprefix(OPEN).lstrip("\n") + generated
            return f"{OPEN}\n{repair_json(body) or body}\n{CLOSE}"
        text = self.prefix + generated
        return (repair_json(text) or text) if self.json_mode else text


def _forced_tool(req: ChatCompletionRequest) -> tuple[bool, str | None]:
    """(whether a call is forced, the forced function's name if one is named)."""
    if isinstance(req.tool_choice, NamedToolChoice):
        return True, req.tool_choice.name
    return req.tool_choice == "required", None


def _system_additions(req: ChatCompletionRequest, codec: TokenCodec) -> list[str]:
    extra = []
    if req.tools and req.tool_choice != "none" and not codec.template_renders_tools:
        extra.append(tools_system_prompt([t.model_dump(exclude_none=True) for t in req.tools]))
    if req.json_mode and not _forced_tool(req)[0]:
        hint = JSON_HINT
        schema = req.response_format.json_schema if req.response_format else None
        if schema:
            body = schema.get("schema", schema)
            hint += f" It must follow this JSON schema: {json.dumps(body, ensure_ascii=False)}"
        extra.append(hint)
    return extra


def chat_messages(req: ChatCompletionRequest, codec: TokenCodec) -> list[dict[str, Any]]:
    """The request's messages as the chat template expects them."""
    native = codec.template_renders_tools
    messages: list[dict[str, Any]] = []
    for message in req.messages:
        try:
            text = message.text()
        except ValueError as exc:
            raise ApiError(400, str(exc), param="messages") from None
        role = "system" if message.role == "developer" else message.role
        entry: dict[str, Any] = {"role": role, "content": text}
        if message.tool_calls:
            calls = [c.model_dump() for c in message.tool_calls]
            if native:
                entry["tool_calls"] = calls
            else:
                entry["content"] = "\n".join(filter(None, [text, render_tool_calls(calls)]))
        if role in ("tool", "function"):
            entry["role"] = "tool"
            if native:
                entry["tool_call_id"] = message.tool_call_id
            else:
                entry["content"] = f"<tool_response>\n{text}\n</tool_response>"
        messages.append(entry)
    additions = _system_additions(req, codec)
    if additions:
        if messages[0]["role"] == "system":
            messages[0]["content"] = "\n\n".join([*additions, messages[0]["content"]])
        else:
            messages.insert(0, {"role": "system", "content": "\n\n".join(additions)})
    return messages


def plan_request(
    req: ChatCompletionRequest, codec: TokenCodec, limits: EmbeddedServerConfig, max_context: int
) -> PromptPlan:
    """Render and encode the prompt and check every limit (ApiError 400 when one is exceeded)."""
    forced, forced_name = _forced_tool(req)
    prefix = forced_call_prefix(forced_name) if forced else ""
    tools = (
        [t.model_dump(exclude_none=True) for t in req.tools]
        if req.tools and codec.template_renders_tools and req.tool_choice != "none"
        else None
    )
    try:
        prompt = codec.render(chat_messages(req, codec), tools) + prefix
    except ApiError:
        raise
    except Exception as exc:  # template errors (e.g. roles that must alternate) are the caller's
        raise ApiError(
            400, f"chat template rejected the messages: {exc}", param="messages"
        ) from None
    prompt_ids = codec.encode(prompt)
    if len(prompt_ids) > limits.max_prompt_tokens:
        raise ApiError(
            400,
            f"prompt is {len(prompt_ids)} tokens; this server accepts at most "
            f"{limits.max_prompt_tokens} (serving.max_prompt_tokens)",
            param="messages",
        )
    budget = req.token_budget
    param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
    if budget is not None and budget > limits.max_new_tokens:
        raise ApiError(
            400,
            f"{param}={budget} exceeds this server's limit of {limits.max_new_tokens} "
            "(serving.max_new_tokens)",
            param=param,
        )
    room = max_context - len(prompt_ids)
    if budget is None:
        budget = min(limits.max_new_tokens, room)
    if budget > room or room < 1:
        raise ApiError(
            400,
            f"prompt ({len(prompt_ids)} tokens) plus {param}={budget} exceeds the model's "
            f"context of {max_context} tokens",
            param=param,
        )
    if req.n > limits.max_batch_size:
        raise ApiError(
            400, f"n={req.n} exceeds serving.max_batch_size={limits.max_batch_size}", param="n"
        )
    if req.min_tokens > budget:
        raise ApiError(
            400, f"min_tokens={req.min_tokens} exceeds {param}={budget}", param="min_tokens"
        )
    constrained = req.json_mode or forced
    fmt = req.response_format
    template = (
        compile_flat_schema(fmt.json_schema)
        if fmt is not None and fmt.type == "json_schema" and fmt.json_schema and not forced
        else None
    )
    params = [
        SamplingParams(
            max_new_tokens=budget,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=None if req.seed is None else req.seed + i,
            stop=tuple(req.stop or ()),
            json_object=constrained,
            json_prefix=prefix.removeprefix(OPEN).lstrip("\n") if forced else "",
            json_template=template,
            logprobs=(req.top_logprobs or 0) if req.wants_logprobs else None,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
            ignore_eos=req.ignore_eos,
            min_tokens=req.min_tokens,
        )
        for i in range(req.n)
    ]
    offered = (
        frozenset(t.function.name for t in req.tools or []) if req.tool_choice != "none" else None
    )
    return PromptPlan(
        prompt_ids=prompt_ids,
        params=params,
        prefix=prefix,
        tool_names=offered or None,
        json_mode=req.json_mode and not forced,
    )
