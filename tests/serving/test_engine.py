"""The batching scheduler on a tiny random model: batched results equal solo results."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from chimera_core.serving.engine import GenerationEngine, StepOutput
from chimera_core.serving.json_constraint import repair_json
from chimera_core.serving.sampling import SamplingParams
from tests.serving.fakes import EOS, CharCodec, tiny_engine, tiny_model

CODEC = CharCodec()


@pytest.fixture
def engine() -> Iterator[GenerationEngine]:
    engine = tiny_engine(max_batch_size=4)
    yield engine
    engine.close(drain=False)
    engine.join(5)


class Collector:
    """Gathers one sequence's outputs from the engine thread."""

    def __init__(self) -> None:
        self.outputs: list[StepOutput] = []
        self.done = threading.Event()

    def __call__(self, out: StepOutput) -> None:
        self.outputs.append(out)
        if out.finish_reason:
            self.done.set()

    @property
    def ids(self) -> list[int]:
        return [t for o in self.outputs for t in o.token_ids]

    @property
    def text(self) -> str:
        return "".join(o.text for o in self.outputs)

    @property
    def finish(self) -> str | None:
        return self.outputs[-1].finish_reason if self.outputs else None


def run(
    engine: GenerationEngine, prompts: list[str], params: list[SamplingParams], stagger: float = 0
) -> list[Collector]:
    collectors = [Collector() for _ in prompts]
    for prompt, p, c in zip(prompts, params, collectors, strict=True):
        engine.submit(CODEC.encode(prompt), [p], [c])
        time.sleep(stagger)
    for c in collectors:
        assert c.done.wait(30)
    return collectors


PROMPTS = ["hi", "tell me a long story about rome", "2+2", "x" * 50]


def test_batched_and_staggered_results_equal_solo_results(engine: GenerationEngine) -> None:
    params = [SamplingParams(max_new_tokens=n, temperature=0.0) for n in (12, 20, 5, 16)]
    solo = [run(engine, [p], [q])[0].ids for p, q in zip(PROMPTS, params, strict=True)]
    together = [c.ids for c in run(engine, PROMPTS, params)]
    staggered = [c.ids for c in run(engine, PROMPTS, params, stagger=0.01)]
    assert together == solo
    assert staggered == solo


def test_rows_share_decode_steps(engine: GenerationEngine) -> None:
    steps, tokens = engine.steps, engine.tokens
    params = [SamplingParams(max_new_tokens=20, temperature=0.0, min_tokens=20)] * 4
    run(engine, PROMPTS, params)
    assert engine.tokens - tokens == 80
    assert engine.steps - steps < 40  # 4 rows of 20 tokens in far fewer than 80 steps


def test_seeds_reproduce_and_differ(engine: GenerationEngine) -> None:
    def sample(seed: int) -> list[int]:
        p = SamplingParams(max_new_tokens=16, temperature=1.5, seed=seed, min_tokens=16)
        return run(engine, ["seed test"], [p])[0].ids

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_identical_prompts_in_one_submission(engine: GenerationEngine) -> None:
    collectors = [Collector() for _ in range(3)]
    params = [
        SamplingParams(max_new_tokens=8, temperature=1.0, seed=s, min_tokens=8) for s in (1, 2, 3)
    ]
    engine.submit(CODEC.encode("same prompt"), params, collectors)
    for c in collectors:
        assert c.done.wait(30)
    assert all(len(c.ids) == 8 for c in collectors)
    alone = run(engine, ["same prompt"], [params[1]])[0].ids
    assert collectors[1].ids == alone


def test_length_stop_and_eos(engine: GenerationEngine) -> None:
    [c] = run(engine, ["abc"], [SamplingParams(max_new_tokens=6, temperature=0.0, ignore_eos=True)])
    assert c.finish == "length" and len(c.ids) == 6
    text = c.text
    stop = text[2:4]
    [s] = run(engine, ["abc"], [SamplingParams(max_new_tokens=6, temperature=0.0, stop=(stop,))])
    if EOS not in c.ids[:3]:
        assert s.finish == "stop" and s.text == text[: text.index(stop)]


def test_min_tokens_bans_eos(engine: GenerationEngine) -> None:
    params = [
        SamplingParams(max_new_tokens=30, temperature=1.0, seed=s, min_tokens=30) for s in range(4)
    ]
    for c in run(engine, ["min"] * 4, params):
        assert len(c.ids) == 30 and EOS not in c.ids


def test_json_constraint_always_parses(engine: GenerationEngine) -> None:
    for seed in range(4):
        p = SamplingParams(max_new_tokens=40, temperature=1.0, seed=seed, json_object=True)
        [c] = run(engine, ["json please"], [p])
        repaired = repair_json(c.text)
        assert repaired is not None, c.text
        assert isinstance(json.loads(repaired), dict)
        if c.finish == "stop":
            assert json.loads(c.text) == json.loads(repaired)


def test_logprobs_are_reported(engine: GenerationEngine) -> None:
    [c] = run(engine, ["lp"], [SamplingParams(max_new_tokens=3, temperature=0.0, logprobs=2)])
    entries = [e for o in c.outputs for e in o.logprobs]
    assert [e.token_id for e in entries] == c.ids
    assert all(e.logprob <= 0 and len(e.top) == 2 for e in entries)
    assert entries[0].top[0][0] == c.ids[0]  # greedy picks the most likely token


def test_cancelled_rows_leave_and_others_finish(engine: GenerationEngine) -> None:
    slow, fast = Collector(), Collector()
    [handle] = engine.submit(
        CODEC.encode("cancel me"), [SamplingParams(max_new_tokens=200, min_tokens=200)], [slow]
    )
    engine.submit(CODEC.encode("keep me"), [SamplingParams(max_new_tokens=5, min_tokens=5)], [fast])
    handle.cancel()
    assert fast.done.wait(30)
    time.sleep(0.2)
    assert not slow.done.is_set() and len(slow.ids) < 200


def test_a_failing_forward_fails_its_rows_and_the_engine_keeps_serving(
    engine: GenerationEngine,
) -> None:
    real = engine.model

    class FailsOnce:
        config = real.config
        dtype = real.dtype
        failed = False

        def __call__(self, *args: object, **kwargs: object) -> object:
            if not self.failed:
                self.failed = True
                raise RuntimeError("simulated kernel failure")
            return real(*args, **kwargs)

    engine.model = FailsOnce()
    try:
        [bad] = run(engine, ["boom"], [SamplingParams(max_new_tokens=4)])
        assert bad.finish == "error" and "simulated" in (bad.outputs[-1].error or "")
        [good] = run(engine, ["fine"], [SamplingParams(max_new_tokens=4, min_tokens=4)])
        assert good.finish == "length"
    finally:
        engine.model = real


def test_closed_engine_refuses_and_drains() -> None:
    engine = tiny_engine()
    running = Collector()
    engine.submit(
        CODEC.encode("drain"), [SamplingParams(max_new_tokens=30, min_tokens=30)], [running]
    )
    engine.close(drain=True)
    with pytest.raises(RuntimeError, match="replaced or unloaded"):
        engine.submit(CODEC.encode("late"), [SamplingParams(max_new_tokens=2)], [Collector()])
    assert running.done.wait(30) and len(running.ids) == 30
    assert engine.join(5)


def test_bf16_rows_with_float32_prompts_and_wide_batches() -> None:
    fp32 = tiny_model()
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    codec: Any = CODEC
    split = GenerationEngine(bf16, codec, label="split", max_batch_size=4, prefill_model=fp32)
    reference = GenerationEngine(fp32, codec, label="fp32", max_batch_size=4)
    params = SamplingParams(max_new_tokens=10, temperature=0.0, min_tokens=10)
    wide = {engine: [Collector() for _ in PROMPTS] for engine in (split, reference)}
    for engine, collectors in wide.items():  # queued before the engines start: one batch
        for prompt, collector in zip(PROMPTS, collectors, strict=True):
            engine.submit(CODEC.encode(prompt), [params], [collector])
        engine.start()
    try:
        for collectors in wide.values():
            assert all(c.done.wait(30) for c in collectors)
        # Four rows decode in float32 throughout: exactly the float32 engine's tokens.
        assert [c.ids for c in wide[split]] == [c.ids for c in wide[reference]]
        # One row decodes in bf16 after a float32 prompt; rows joining convert the cache.
        [alone] = run(split, [PROMPTS[1]], [params])
        assert alone.ids[0] == wide[reference][1].ids[0]
        staggered = run(split, PROMPTS, [params] * 4, stagger=0.005)
        assert [len(c.ids) for c in staggered] == [10] * 4
    finally:
        for engine in (split, reference):
            engine.close(drain=False)
            engine.join(5)
