"""``RunInputs``, the one-pass algorithm: each finished rollout is logged, hooked, spans saved.

``_log`` is checked alone (tracker metrics, the ``on_rollout_finished`` hook through
``PluginRegistry.notify``); ``run`` against Agent Lightning's real in-memory store, with the test
playing the runner (dequeue, write the record as the agent does, add spans, finish).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from chimera_core.rollouts.agl_env import prepare_agl_environment

prepare_agl_environment()  # before Agent Lightning is imported (by the algorithm module)

import agentlightning as agl  # noqa: E402

from chimera_core.artifacts import LocalArtifactStore  # noqa: E402
from chimera_core.data.rollouts import RoleUsage, RolloutRecord  # noqa: E402
from chimera_core.plugins import PluginRegistry, build_registry, hookimpl  # noqa: E402
from chimera_core.rollouts import algorithm as algorithm_module  # noqa: E402
from chimera_core.rollouts.algorithm import RunInputs  # noqa: E402
from chimera_core.rollouts.storage import load_spans, record_key, spans_key  # noqa: E402

PREFIX = "runs/r1/gather/rollouts"
SERVED = {"junior": "chimera-junior", "senior": "chimera-senior", "judge": "chimera-judge"}


class FakeTracker:
    """Records what ``Tracker.log`` is given."""

    def __init__(self) -> None:
        self.logged: list[tuple[int | None, dict[str, Any]]] = []

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.logged.append((step, dict(metrics)))


class Listener:
    """A plugin that records every ``on_rollout_finished`` call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def on_rollout_finished(
        self, run_id: str, task_id: str, reward: float, record: Mapping[str, Any]
    ) -> None:
        self.calls.append(
            {"run_id": run_id, "task_id": task_id, "reward": reward, "record": record}
        )


class Broken:
    """A plugin whose hook always raises."""

    @hookimpl
    def on_rollout_finished(self, task_id: str) -> None:
        raise RuntimeError(f"listener bug on {task_id}")


def _registry(*plugins: tuple[str, object]) -> PluginRegistry:
    registry = build_registry(environ={"CHIMERA_PLUGINS": ""})
    for name, plugin in plugins:
        registry.pm.register(plugin, name=name)
    return registry


def _record(task_id: str, **fields: Any) -> RolloutRecord:
    values: dict[str, Any] = {
        "rollout_id": f"ro-{task_id}",
        "run_id": "r1",
        "stage": "gather",
        "task_id": task_id,
        "status": "succeeded",
        "expected_decision": "yes",
    }
    values.update(fields)
    return RolloutRecord.model_validate(values)


@pytest.fixture
def artifacts(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _inputs(*task_ids: str) -> list[dict[str, Any]]:
    """What run_rollouts enqueues (only the keys RunInputs reads, plus the task id)."""
    return [
        {
            "task_id": t,
            "record_key": record_key(PREFIX, t),
            "spans_key": spans_key(PREFIX, t),
        }
        for t in task_ids
    ]


def test_log_sends_the_records_metrics_to_the_tracker(artifacts: LocalArtifactStore) -> None:
    tracker = FakeTracker()
    algo = RunInputs([], SERVED, artifacts, tracker)  # type: ignore[arg-type]
    record = _record(
        "7",
        reward=0.625,
        turns=9,
        latency_s=1.5,
        usage={
            "Geneticist": RoleUsage(calls=1, prompt_tokens=100, completion_tokens=20),
            "Supervisor": RoleUsage(calls=2, prompt_tokens=50, completion_tokens=10),
        },
        reward_components={"decision_alignment": 1.0, "llm_judge": 0.25},
        reward_breakdown={"llm_judge.clarity": 0.5, "decision_alignment.aligned_original": 1.0},
    )
    algo._log(_registry(), record, step=3)
    assert tracker.logged == [
        (
            3,
            {
                "rollout/reward": 0.625,
                "rollout/succeeded": 1.0,
                "rollout/turns": 9,
                "rollout/latency_s": 1.5,
                "rollout/tokens": 180,
                "task_id": "7",
                "reward/decision_alignment": 1.0,
                "reward/llm_judge": 0.25,
                "breakdown/llm_judge.clarity": 0.5,
                "breakdown/decision_alignment.aligned_original": 1.0,
            },
        )
    ]


def test_log_delivers_on_rollout_finished_with_the_record_as_json(
    artifacts: LocalArtifactStore,
) -> None:
    listener = Listener()
    algo = RunInputs([], SERVED, artifacts, FakeTracker())  # type: ignore[arg-type]
    record = _record("7", reward=0.5, reward_components={"decision_alignment": 0.5})
    algo._log(_registry(("listener", listener)), record, step=1)
    assert listener.calls == [
        {
            "run_id": "r1",
            "task_id": "7",
            "reward": 0.5,
            "record": record.model_dump(mode="json"),
        }
    ]
    json.dumps(listener.calls[0]["record"])  # plain JSON, as the hook documents


def test_a_failed_record_is_logged_with_zero_reward(artifacts: LocalArtifactStore) -> None:
    tracker, listener = FakeTracker(), Listener()
    algo = RunInputs([], SERVED, artifacts, tracker)  # type: ignore[arg-type]
    record = _record("8", status="failed", error="ConnectError: refused", reward=None)
    algo._log(_registry(("listener", listener)), record, step=2)
    (step, metrics) = tracker.logged[0]
    assert step == 2
    assert metrics["rollout/reward"] == 0.0 and metrics["rollout/succeeded"] == 0.0
    assert not any(k.startswith(("reward/", "breakdown/")) for k in metrics)
    assert listener.calls[0]["reward"] == 0.0
    assert listener.calls[0]["record"]["error"] == "ConnectError: refused"


def test_a_raising_listener_neither_stops_logging_nor_the_other_listeners(
    artifacts: LocalArtifactStore,
) -> None:
    tracker, listener = FakeTracker(), Listener()
    algo = RunInputs([], SERVED, artifacts, tracker)  # type: ignore[arg-type]
    registry = _registry(("broken", Broken()), ("listener", listener))
    algo._log(registry, _record("9", reward=1.0), step=1)
    algo._log(registry, _record("10", reward=0.0), step=2)
    assert [step for step, _ in tracker.logged] == [1, 2]
    assert [c["task_id"] for c in listener.calls] == ["9", "10"]


class StubProxy:
    """The LLM proxy as ``run`` uses it: already running, a resource per served name."""

    def is_running(self) -> bool:
        return True

    def as_resource(self, model: str | None = None) -> agl.ProxyLLM:
        return agl.ProxyLLM(endpoint="http://127.0.0.1:9/v1", model=model or "")


async def _eventually(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _dequeue(store: agl.InMemoryLightningStore) -> Any:
    rollout = None
    while rollout is None:
        rollout = await store.dequeue_rollout()
        await asyncio.sleep(0.005)
    return rollout


async def _add_span(store: agl.InMemoryLightningStore, rollout: Any, name: str, seq: int) -> None:
    span = agl.Span.from_attributes(
        attributes={"node": name},
        rollout_id=rollout.rollout_id,
        attempt_id=rollout.attempt.attempt_id,
        sequence_id=seq,
        name=name,
    )
    await store.add_span(span)


def _run(
    algo: RunInputs, play_runner: Callable[[agl.InMemoryLightningStore], Awaitable[None]]
) -> agl.InMemoryLightningStore:
    """Run the algorithm against a real in-memory store while ``play_runner`` serves it."""
    store = agl.InMemoryLightningStore()
    proxy = StubProxy()  # held here: the algorithm keeps a weak reference
    algo.set_store(store)
    algo.set_llm_proxy(proxy)  # type: ignore[arg-type]

    async def main() -> None:
        running = asyncio.create_task(algo.run())
        await play_runner(store)
        await asyncio.wait_for(running, timeout=20)

    asyncio.run(main())
    return store


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(algorithm_module, "POLL_S", 0.01)


def test_run_publishes_the_routes_and_logs_each_rollout_as_it_finishes(
    artifacts: LocalArtifactStore, fast_poll: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker, listener = FakeTracker(), Listener()
    monkeypatch.setattr(algorithm_module, "get_registry", lambda: _registry(("l", listener)))
    inputs = _inputs("1", "2")
    algo = RunInputs(inputs, SERVED, artifacts, tracker)  # type: ignore[arg-type]
    seen: dict[str, Any] = {}

    async def play_runner(store: agl.InMemoryLightningStore) -> None:
        first, second = await _dequeue(store), await _dequeue(store)
        seen["inputs"] = [first.input, second.input]
        seen["modes"] = {first.mode, second.mode}
        update = await store.get_resources_by_id(first.resources_id)
        assert update is not None
        seen["resources"] = {k: v.model for k, v in update.resources.items()}
        assert second.resources_id == first.resources_id

        # The first finishes: its record (written by the agent) is logged and its spans saved
        # at once, while the second still runs.
        artifacts.put_json(inputs[0]["record_key"], _record("1", reward=0.8).model_dump())
        await _add_span(store, first, "Geneticist", 1)
        await store.update_attempt(first.rollout_id, first.attempt.attempt_id, status="succeeded")
        await _eventually(lambda: len(tracker.logged) == 1, "the first rollout's log")
        assert load_spans(artifacts, PREFIX, "1")[0]["name"] == "Geneticist"
        assert not artifacts.exists(spans_key(PREFIX, "2"))
        assert [c["task_id"] for c in listener.calls] == ["1"]

        # A span that arrives after the rollout finished is saved at the end.
        await _add_span(store, first, "late", 2)
        artifacts.put_json(
            inputs[1]["record_key"],
            _record("2", status="failed", error="TimeoutError: slow").model_dump(),
        )
        await _add_span(store, second, "Neurologist", 1)
        await store.update_attempt(second.rollout_id, second.attempt.attempt_id, status="failed")

    _run(algo, play_runner)
    assert seen["inputs"] == inputs and seen["modes"] == {"train"}
    assert seen["resources"] == SERVED  # each alias -> the proxy's route by served name
    assert [(step, m["task_id"], m["rollout/reward"]) for step, m in tracker.logged] == [
        (1, "1", 0.8),
        (2, "2", 0.0),
    ]
    assert [(c["task_id"], c["reward"]) for c in listener.calls] == [("1", 0.8), ("2", 0.0)]
    assert [s["name"] for s in load_spans(artifacts, PREFIX, "1")] == ["Geneticist", "late"]
    assert [s["name"] for s in load_spans(artifacts, PREFIX, "2")] == ["Neurologist"]
    assert set(algo.spans_key_of.values()) == {spans_key(PREFIX, "1"), spans_key(PREFIX, "2")}


def test_a_rollout_that_left_no_record_ends_the_run_without_a_log(
    artifacts: LocalArtifactStore, fast_poll: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker, listener = FakeTracker(), Listener()
    monkeypatch.setattr(algorithm_module, "get_registry", lambda: _registry(("l", listener)))
    inputs = _inputs("1", "2")
    algo = RunInputs(inputs, SERVED, artifacts, tracker)  # type: ignore[arg-type]

    async def play_runner(store: agl.InMemoryLightningStore) -> None:
        first, second = await _dequeue(store), await _dequeue(store)
        # The first runner died before writing a record; the second was cancelled after one.
        await store.update_attempt(first.rollout_id, first.attempt.attempt_id, status="failed")
        artifacts.put_json(inputs[1]["record_key"], _record("2", reward=0.5).model_dump())
        await store.update_rollout(second.rollout_id, status="cancelled")

    _run(algo, play_runner)
    assert [m["task_id"] for _, m in tracker.logged] == ["2"]
    assert [c["task_id"] for c in listener.calls] == ["2"]
    # Spans are saved for every rollout, an empty list where none came.
    assert load_spans(artifacts, PREFIX, "1") == []
    assert artifacts.get_json(spans_key(PREFIX, "1")) == []
