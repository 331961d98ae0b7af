"""One request's generation seen from the event loop: engine outputs in, responses out."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from chimera_core.serving.chat import PromptPlan
from chimera_core.serving.engine import RowHandle, StepOutput
from chimera_core.serving.pool import LoadedModel
from chimera_core.serving.protocol import (
    ApiError,
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    Usage,
    completion_id,
    error_body,
    now,
)
from chimera_core.serving.responses import ChoiceState

log = logging.getLogger("chimera.serving")


class Generation:
    """One request's choices running in an engine, with outputs delivered on the event loop."""

    def __init__(self, loaded: LoadedModel, plan: PromptPlan, stream: bool) -> None:
        self.plan = plan
        self.stream = stream
        self.codec = loaded.codec
        self.queue: asyncio.Queue[tuple[int, list[StepOutput]]] = asyncio.Queue()
        self.states = [ChoiceState(i, plan, loaded.codec) for i in range(len(plan.params))]
        self.handles: list[RowHandle] = []
        self.started = time.perf_counter()

    def submit(self, loaded: LoadedModel) -> None:
        """Queue every choice in the engine."""
        loop = asyncio.get_running_loop()

        def sink_for(index: int) -> Callable[[StepOutput], None]:
            held: list[StepOutput] = []

            def sink(out: StepOutput) -> None:
                # Without streaming, wake the event loop once per choice, not once per token:
                # each wake-up takes the GIL from the decoding thread.
                held.append(out)
                if self.stream or out.finish_reason is not None:
                    batch = held.copy()
                    held.clear()
                    loop.call_soon_threadsafe(self.queue.put_nowait, (index, batch))

            return sink

        sinks = [sink_for(i) for i in range(len(self.plan.params))]
        self.handles = loaded.engine.submit(self.plan.prompt_ids, self.plan.params, sinks)

    async def outputs(self) -> AsyncIterator[tuple[ChoiceState, StepOutput]]:
        """Engine outputs in arrival order until every choice has finished."""
        while not all(s.done for s in self.states):
            index, outs = await self.queue.get()
            state = self.states[index]
            for out in outs:
                state.add(out)
                if out.finish_reason == "error":
                    raise ApiError(500, f"generation failed: {out.error}", kind="server_error")
                yield state, out

    def cancel(self) -> None:
        """Abandon unfinished choices (the client went away)."""
        for handle, state in zip(self.handles, self.states, strict=False):
            if not state.done:
                handle.cancel()

    def usage(self) -> Usage:
        """Token counts over all choices."""
        completion = sum(len(s.token_ids) for s in self.states)
        prompt = len(self.plan.prompt_ids)
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )

    def log_done(self, name: str) -> None:
        """One line per request, naming the model."""
        usage = self.usage()
        seconds = time.perf_counter() - self.started
        reasons = ",".join(sorted({s.finish_reason or "?" for s in self.states}))
        log.info(
            "model %s: %d choice(s), %d prompt + %d completion tokens, finish=%s, "
            "%.2f s (%.1f tok/s)",
            name,
            len(self.states),
            usage.prompt_tokens,
            usage.completion_tokens,
            reasons,
            seconds,
            usage.completion_tokens / max(seconds, 1e-9),
        )


def _sse(chunk: ChatCompletionChunk) -> str:
    return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"


async def sse_stream(generation: Generation, model: str, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``."""
    cid, created = completion_id(), now()

    def chunk(choices: list[ChunkChoice], **extra: Any) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=cid, created=created, model=model, choices=choices, **extra)

    try:
        first = [
            ChunkChoice(index=s.index, delta=Delta(role="assistant", content=""))
            for s in generation.states
        ]
        yield _sse(chunk(first, prompt_token_ids=generation.plan.prompt_ids))
        async for state, out in generation.outputs():
            yield _sse(chunk([state.chunk(out)]))
        if include_usage:
            yield _sse(chunk([], usage=generation.usage()))
        generation.log_done(model)
    except ApiError as exc:
        yield f"data: {json.dumps(error_body(exc.message, exc.kind))}\n\n"
    finally:
        generation.cancel()
    yield "data: [DONE]\n\n"
