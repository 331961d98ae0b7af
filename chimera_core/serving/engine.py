"""Batched generation: one scheduler thread per loaded model decodes all its requests together.

Requests wait in a queue; between decode steps the scheduler prefills newcomers (up to
``max_batch_size`` rows), merges them into the running batch and samples each row with its own
settings. Finished rows leave at once, so a short request never waits for a long one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from chimera_core.serving.json_constraint import JsonPrefix
from chimera_core.serving.kv import Batch, check_cache, left_padded
from chimera_core.serving.sampling import (
    SamplingParams,
    TokenLogprob,
    choose_token,
    make_generator,
    token_logprob,
)
from chimera_core.serving.schema_constraint import SchemaPrefix
from chimera_core.serving.text import TextTracker
from chimera_core.serving.tokens import TokenCodec

log = logging.getLogger("chimera.serving.engine")
FLOAT32_BATCH_ROWS = 4
COALESCE_S = 0.02


class EngineClosed(RuntimeError):
    """The engine no longer takes requests (its model was replaced or unloaded)."""


@dataclass
class StepOutput:
    """What one step produced for one sequence."""

    token_ids: list[int]
    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "error"
    error: str | None = None


Sink = Callable[[StepOutput], None]


class _Row:
    """One sequence being generated."""

    def __init__(
        self, prompt_ids: list[int], params: SamplingParams, sink: Sink, codec: TokenCodec
    ):
        self.prompt_ids = prompt_ids
        self.params = params
        self.sink = sink
        self.generator = make_generator(params.seed)
        self.tracker = TextTracker(codec.decode, params.stop)
        self.json: JsonPrefix | SchemaPrefix | None = None
        if params.json_template is not None:
            self.json = SchemaPrefix(params.json_template)
        elif params.json_object:
            self.json = JsonPrefix(root_object=not params.json_prefix)
            if not self.json.feed(params.json_prefix):
                raise ValueError(f"json_prefix is not a JSON prefix: {params.json_prefix!r}")
        self.counts: torch.Tensor | None = None
        self.generated = 0
        self.done = False
        self.cancelled = False


class RowHandle:
    """Lets a caller abandon a sequence (e.g. the client disconnected)."""

    def __init__(self, row: _Row) -> None:
        self._row = row

    def cancel(self) -> None:
        """Stop generating; the row leaves the batch at the next step."""
        self._row.cancelled = True


class GenerationEngine:
    """Serves one loaded model: a request queue and a scheduler thread."""

    def __init__(
        self,
        model: Any,
        codec: TokenCodec,
        *,
        label: str,
        max_batch_size: int = 8,
        max_context: int | None = None,
        prefill_model: Any = None,
    ) -> None:
        self.model = model
        # Optional float32 copy of bf16 weights, for prompts and wide batches (see pool).
        self.prefill_model = prefill_model
        self.codec = codec
        self.label = label
        self.max_batch_size = max_batch_size
        context = max_context or getattr(model.config, "max_position_embeddings", None)
        self.max_context = int(context or 4096)
        self._waiting: deque[_Row] = deque()
        self._active = 0
        self._cond = threading.Condition()
        self._closed = False
        self._abort = False
        self._thread = threading.Thread(target=self._run, name=f"engine-{label}", daemon=True)
        self.steps = 0  # decode steps run
        self.tokens = 0  # tokens generated (tokens / steps > 1 means batching happened)
        check_cache(DynamicCache(config=model.config))

    # ------------------------------------------------------------ public API

    def start(self) -> GenerationEngine:
        """Start the scheduler thread."""
        self._thread.start()
        return self

    def submit(
        self, prompt_ids: list[int], params: list[SamplingParams], sinks: list[Sink]
    ) -> list[RowHandle]:
        """Queue one sequence per (params, sink); outputs arrive through the sinks."""
        rows = [_Row(prompt_ids, p, s, self.codec) for p, s in zip(params, sinks, strict=True)]
        with self._cond:
            if self._closed:
                raise EngineClosed(f"model {self.label} is being replaced or unloaded")
            self._waiting.extend(rows)
            self._cond.notify()
        return [RowHandle(r) for r in rows]

    def close(self, drain: bool = True) -> None:
        """Take no new requests; finish (``drain``) or abort the queued and running ones."""
        with self._cond:
            self._closed = True
            self._abort = not drain
            self._cond.notify()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the scheduler to exit after ``close``; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def load(self) -> dict[str, int]:
        """Sequences running and waiting, and counters of work done."""
        return {
            "running": self._active,
            "waiting": len(self._waiting),
            "steps": self.steps,
            "tokens": self.tokens,
        }

    # ------------------------------------------------------------ scheduler

    def _take(self, active: int) -> list[_Row] | None:
        """Newcomers that fit in the batch; blocks while idle; None once closed and drained."""
        with self._cond:
            while not self._waiting and active == 0:
                if self._closed:
                    return None
                self._cond.wait()
            # Idle: clients that start together arrive milliseconds apart; a short wait lets
            # their prompts share one forward pass instead of one pass each.
            deadline = time.monotonic() + COALESCE_S
            while active == 0 and len(self._waiting) < self.max_batch_size and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._abort:
                aborted = list(self._waiting)
                self._waiting.clear()
                for row in aborted:
                    self._emit(row, StepOutput([], "", finish_reason="error", error="aborted"))
                return []
            taken: list[_Row] = []
            while self._waiting and active + len(taken) < self.max_batch_size:
                row = self._waiting.popleft()
                if not row.cancelled:
                    taken.append(row)
            return taken

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        batch: Batch[_Row] | None = None
        with torch.inference_mode():
            while True:
                new = self._take(len(batch.rows) if batch else 0)
                if new is None:
                    break
                try:
                    if self._abort and batch is not None:
                        for row in batch.rows:
                            self._emit(
                                row, StepOutput([], "", finish_reason="error", error="aborted")
                            )
                        batch = None
                    for group in self._prefill_groups(new):
                        joined = self._prefill(group)
                        if joined is not None:
                            batch = joined if batch is None else batch.merge(joined)
                    if batch is not None:
                        batch = self._decode(batch)
                except Exception as exc:  # one bad batch must not kill the model's thread
                    log.exception("model %s: generation failed", self.label)
                    for row in [*(batch.rows if batch else []), *new]:
                        if not row.done:
                            self._emit(
                                row,
                                StepOutput(
                                    [],
                                    "",
                                    finish_reason="error",
                                    error=f"{type(exc).__name__}: {exc}",
                                ),
                            )
                    batch = None
                self._active = len(batch.rows) if batch else 0

    @staticmethod
    def _prefill_groups(rows: list[_Row]) -> list[list[_Row]]:
        """Split newcomers by prompt length so that left padding wastes little compute."""
        groups: list[list[_Row]] = []
        for row in sorted(rows, key=lambda r: len(r.prompt_ids)):
            if groups:
                group = groups[-1]
                real = sum(len(r.prompt_ids) for r in group) + len(row.prompt_ids)
                if len(row.prompt_ids) * (len(group) + 1) <= 1.5 * real + 256:
                    group.append(row)
                    continue
            groups.append([row])
        return groups

    def _prefill(self, rows: list[_Row]) -> Batch[_Row] | None:
        """Run the prompts of newcomers (identical prompts once) and pick their first tokens."""
        unique: dict[tuple[int, ...], int] = {}
        for row in rows:
            unique.setdefault(tuple(row.prompt_ids), len(unique))
        ids, mask, positions = left_padded([list(p) for p in unique], self.codec.pad_id)
        out = (self.prefill_model or self.model)(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=DynamicCache(config=self.model.config),
            use_cache=True,
            logits_to_keep=1,
        )
        index = torch.tensor([unique[tuple(r.prompt_ids)] for r in rows])
        cache = out.past_key_values
        for layer in cache.layers:
            if len(unique) != len(rows):
                layer.keys = layer.keys.index_select(0, index)
                layer.values = layer.values.index_select(0, index)
        logits = out.logits[:, -1, :].float().index_select(0, index)
        mask = mask.index_select(0, index)
        tokens = [self._next(row, logits[i]) for i, row in enumerate(rows)]
        batch = Batch(
            rows=rows, cache=cache, mask=mask, pos=mask.sum(-1), last=torch.tensor(tokens)
        )
        return batch.keep([i for i, r in enumerate(rows) if not r.done])

    def _decode(self, batch: Batch[_Row]) -> Batch[_Row] | None:
        """One forward step for every running row."""
        for row in batch.rows:
            if row.cancelled and not row.done:
                row.done = True
        kept = batch.keep([i for i, r in enumerate(batch.rows) if not r.done])
        if kept is None:
            return None
        batch = kept
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=1)
        model = self._decoder(len(batch.rows))
        batch.to(model.dtype)
        out = model(
            input_ids=batch.last[:, None],
            attention_mask=batch.mask,
            position_ids=batch.pos[:, None],
            past_key_values=batch.cache,
            use_cache=True,
        )
        batch.pos = batch.pos + 1
        logits = out.logits[:, -1, :].float()
        batch.last = torch.tensor([self._next(row, logits[i]) for i, row in enumerate(batch.rows)])
        self.steps += 1
        return batch.keep([i for i, r in enumerate(batch.rows) if not r.done])

    def _decoder(self, rows: int) -> Any:
        """The weights to decode ``rows`` rows with.

        On CPUs without native bf16, one row decodes faster in bf16 (half the memory traffic)
        but a wide batch is compute-bound and faster in float32 (measured crossover: ~4 rows).
        """
        if self.prefill_model is not None and rows >= FLOAT32_BATCH_ROWS:
            return self.prefill_model
        return self.model

    # ------------------------------------------------------------ per row

    def _next(self, row: _Row, logits: torch.Tensor) -> int:
        """Choose a row's next token, record it and tell the caller."""
        params = row.params
        if params.penalized and row.counts is None:
            row.counts = torch.zeros(logits.shape[-1])
        banned = self.codec.eos_ids if row.generated < params.min_tokens else frozenset()
        allowed = self._json_filter(row) if row.json is not None else None
        token = choose_token(
            logits, params, row.generator, counts=row.counts, banned=banned, allowed=allowed
        )
        logprob = (
            token_logprob(logits, token, params.logprobs) if params.logprobs is not None else None
        )
        row.generated += 1
        self.tokens += 1
        if row.counts is not None:
            row.counts[token] += 1
        finish: str | None = None
        if token in self.codec.eos_ids and not params.ignore_eos:
            text, finish = row.tracker.flush(), "stop"
        else:
            text = row.tracker.add(token)
            if row.json is not None:
                row.json.feed(self.codec.piece(token) or "")
            if row.tracker.stopped or (row.json is not None and row.json.complete):
                text, finish = text + row.tracker.flush(), "stop"
            elif row.generated >= params.max_new_tokens:
                text, finish = text + row.tracker.flush(), "length"
        if finish is not None:
            row.done = True
        self._emit(row, StepOutput([token], text, [logprob] if logprob else [], finish))
        return token

    def _json_filter(self, row: _Row) -> Callable[[int], bool]:
        state = row.json
        assert state is not None
        codec = self.codec

        def allowed(token_id: int) -> bool:
            piece = codec.piece(token_id)
            return bool(piece) and token_id not in codec.eos_ids and state.accepts(piece or "")

        return allowed

    def _emit(self, row: _Row, output: StepOutput) -> None:
        if output.finish_reason is not None:
            row.done = True
        try:
            row.sink(output)
        except Exception:  # a vanished client must not stop the others
            log.warning(
                "model %s: dropping a sequence whose consumer failed", self.label, exc_info=True
            )
            row.cancelled = True


def warm_up(engine: GenerationEngine) -> float:
    """Run a two-token generation so the first real request pays no one-time setup; seconds."""
    done = threading.Event()
    start = time.perf_counter()
    engine.submit(
        [engine.codec.pad_id],
        [SamplingParams(max_new_tokens=2, temperature=0.0, min_tokens=2)],
        [lambda out: done.set() if out.finish_reason else None],
    )
    done.wait(60)
    return (time.perf_counter() - start) / 2
