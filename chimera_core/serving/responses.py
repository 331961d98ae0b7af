"""Turning engine outputs into OpenAI responses: one accumulator per choice, stream or not."""

from __future__ import annotations

from chimera_core.serving.chat import PromptPlan
from chimera_core.serving.engine import StepOutput
from chimera_core.serving.protocol import (
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    FunctionCall,
    ResponseMessage,
    TokenLogprobOut,
    ToolCall,
    TopLogprob,
)
from chimera_core.serving.sampling import TokenLogprob
from chimera_core.serving.tokens import TokenCodec
from chimera_core.serving.tool_calls import CLOSE, OPEN, parse_tool_calls


def _held_tool_prefix(text: str) -> int:
    """Where streamed content must stop: at a tool-call opening (or what may become one)."""
    cut = text.find(OPEN)
    if cut >= 0:
        return cut
    for size in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-size:]):
            return len(text) - size
    return len(text)


class ChoiceState:
    """Accumulates one choice's tokens, text and logprobs; shapes the final message."""

    def __init__(self, index: int, plan: PromptPlan, codec: TokenCodec) -> None:
        self.index = index
        self.plan = plan
        self.codec = codec
        self.token_ids: list[int] = []
        self.text = ""
        self.logprobs: list[TokenLogprob] = []
        self.finish_reason: str | None = None
        self.error: str | None = None
        self.streamed = 0  # characters of content already sent in stream mode

    @property
    def done(self) -> bool:
        """Whether the engine finished this choice."""
        return self.finish_reason is not None

    def add(self, out: StepOutput) -> None:
        """Record one engine step."""
        self.token_ids.extend(out.token_ids)
        self.text += out.text
        self.logprobs.extend(out.logprobs)
        if out.finish_reason is not None:
            self.finish_reason = out.finish_reason
            self.error = out.error

    # ------------------------------------------------------------ final shape

    def message(self) -> tuple[ResponseMessage, str]:
        """The assistant message and finish reason (``tool_calls`` when calls were parsed)."""
        text = self.plan.full_text(self.text)
        reason = self.finish_reason or "stop"
        if self.plan.tool_names:
            content, calls = parse_tool_calls(text, set(self.plan.tool_names))
            if calls:
                tool_calls = [
                    ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
                    for c in calls
                ]
                return ResponseMessage(content=content, tool_calls=tool_calls), "tool_calls"
        return ResponseMessage(content=text), reason

    def choice(self) -> Choice:
        """The non-streaming ``choices[i]``."""
        message, reason = self.message()
        return Choice(
            index=self.index,
            message=message,
            finish_reason=reason,
            logprobs=self.logprobs_out(self.logprobs)
            if self.plan.params[0].logprobs is not None
            else None,
            token_ids=self.token_ids,
        )

    def logprobs_out(self, entries: list[TokenLogprob]) -> ChoiceLogprobs:
        """OpenAI's logprobs structure for some positions."""

        def top(token_id: int, logprob: float) -> TopLogprob:
            text = self.codec.token_text(token_id)
            return TopLogprob(token=text, logprob=logprob, bytes=list(text.encode()))

        return ChoiceLogprobs(
            content=[
                TokenLogprobOut(
                    **top(e.token_id, e.logprob).model_dump(),
                    top_logprobs=[top(i, lp) for i, lp in e.top],
                )
                for e in entries
            ]
        )

    # ------------------------------------------------------------ streaming

    def chunk(self, out: StepOutput) -> ChunkChoice:
        """The stream chunk for one engine step (text held back while a tool call may start)."""
        full = self.plan.prefix + self.text
        reason = None
        if self.done:
            delta, reason = self._closing_delta(full)
        else:
            upto = _held_tool_prefix(full) if self.plan.tool_names else len(full)
            content = full[self.streamed : upto] if upto > self.streamed else ""
            self.streamed = max(self.streamed, upto)
            delta = Delta(content=content or None)
        return ChunkChoice(
            index=self.index,
            delta=delta,
            finish_reason=reason,
            logprobs=self.logprobs_out(out.logprobs) if out.logprobs else None,
            token_ids=out.token_ids,
        )

    def _closing_delta(self, full: str) -> tuple[Delta, str]:
        """The last delta: what is still unsent, a JSON closing, or the parsed tool calls."""
        message, reason = self.message()
        sent = full[: self.streamed]
        if message.tool_calls:
            calls = [
                {"index": i, "id": c.id, "type": "function", "function": c.function.model_dump()}
                for i, c in enumerate(message.tool_calls)
            ]
            before = full[self.streamed : _held_tool_prefix(full)]
            after = full.rpartition(CLOSE)[2].strip() if CLOSE in full else ""
            return Delta(content=(before + after) or None, tool_calls=calls), reason
        final = message.content or ""
        # The final text extends what was sent (held text, or the closing of cut-off JSON).
        content = final[len(sent) :] if final.startswith(sent) else full[self.streamed :]
        self.streamed = len(full)
        return Delta(content=content or None), reason
