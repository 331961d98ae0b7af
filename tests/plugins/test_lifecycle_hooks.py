"""Lifecycle hooks: delivered through pluggy with the documented arguments; a raising listener
is logged and never fails the rollout or the stage that notified it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy
import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.config import load_config
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.plugins import PluginRegistry, build_registry, hookimpl
from chimera_core.stages import base as stage_base
from chimera_core.stages.base import StageContext, StageResult, execute_stage


class Listener:
    """A plugin implementing both lifecycle hooks; it records every call."""

    def __init__(self) -> None:
        self.rollouts: list[dict[str, Any]] = []
        self.stages: list[dict[str, Any]] = []

    @hookimpl
    def on_rollout_finished(
        self, run_id: str, task_id: str, reward: float, record: Mapping[str, Any]
    ) -> None:
        self.rollouts.append(
            {"run_id": run_id, "task_id": task_id, "reward": reward, "record": record}
        )

    @hookimpl
    def on_stage_finished(self, run_id: str, stage: str, outputs: Mapping[str, str]) -> None:
        self.stages.append({"run_id": run_id, "stage": stage, "outputs": dict(outputs)})


class Broken:
    """A plugin whose lifecycle hooks always raise."""

    @hookimpl
    def on_rollout_finished(self, run_id: str) -> None:
        raise RuntimeError(f"listener bug in {run_id}")

    @hookimpl
    def on_stage_finished(self, stage: str) -> None:
        raise RuntimeError(f"listener bug after {stage}")


def _registry(*plugins: tuple[str, object]) -> PluginRegistry:
    """The built-ins only (no installed third-party plugin), plus the given test plugins."""
    registry = build_registry(environ={"CHIMERA_PLUGINS": ""})
    for name, plugin in plugins:
        registry.pm.register(plugin, name=name)
    return registry


def _record() -> dict[str, Any]:
    """A rollout record in the form the gather stage passes it (``model_dump(mode="json")``)."""
    record = RolloutRecord(
        rollout_id="ro-1",
        run_id="run-1",
        stage="gather",
        task_id="21645374",
        status="succeeded",
        reward=0.75,
        reward_components={"decision_alignment": 1.0, "step_brevity": 0.5},
        expected_decision="yes",
        final_decision="GO",
        final_answer="yes",
    )
    return record.model_dump(mode="json")


def _config(tmp_path: Path) -> Any:
    return load_config("local", overrides={"artifacts.local_root": str(tmp_path)}, environ={})


def _stage(ctx: StageContext) -> StageResult:
    """A trivial stage: one output URI, no work."""
    uri = ctx.store.uri(ctx.key("out.json"))
    return StageResult(stage=ctx.stage, run_id=ctx.run_id, outputs={"report": uri})


def test_on_rollout_finished_reaches_the_plugin_with_the_documented_arguments() -> None:
    listener = Listener()
    registry = _registry(("listener", listener))
    record = _record()
    registry.notify(
        "on_rollout_finished", run_id="run-1", task_id="21645374", reward=0.75, record=record
    )
    assert listener.rollouts == [
        {"run_id": "run-1", "task_id": "21645374", "reward": 0.75, "record": record}
    ]
    assert listener.rollouts[0]["record"]["reward_components"]["step_brevity"] == 0.5
    assert listener.stages == []


def test_on_stage_finished_reaches_the_plugin_with_the_documented_arguments() -> None:
    listener = Listener()
    registry = _registry(("listener", listener))
    outputs = {"report": "file:///tmp/report.md"}
    registry.notify("on_stage_finished", run_id="run-1", stage="evaluate", outputs=outputs)
    assert listener.stages == [{"run_id": "run-1", "stage": "evaluate", "outputs": outputs}]
    assert listener.rollouts == []


def test_a_listener_may_declare_only_the_arguments_it_needs() -> None:
    seen: list[str] = []

    class TaskOnly:
        @hookimpl
        def on_rollout_finished(self, task_id: str) -> None:
            seen.append(task_id)

    registry = _registry(("task-only", TaskOnly()))
    registry.notify("on_rollout_finished", run_id="r", task_id="t1", reward=0.0, record={})
    assert seen == ["t1"]


def test_a_listener_with_an_unknown_argument_is_refused_at_registration() -> None:
    class Misspelt:
        @hookimpl
        def on_stage_finished(self, stage_name: str) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError, match="stage_name"):
        _registry(("misspelt", Misspelt()))


def test_a_raising_listener_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = Listener()
    registry = _registry(("broken", Broken()), ("listener", listener))
    with caplog.at_level(logging.WARNING, logger="chimera.plugins"):
        registry.notify(
            "on_rollout_finished", run_id="run-1", task_id="t1", reward=1.0, record=_record()
        )
        registry.notify("on_stage_finished", run_id="run-1", stage="gather", outputs={})
    assert [r["task_id"] for r in listener.rollouts] == ["t1"]
    assert [s["stage"] for s in listener.stages] == ["gather"]
    messages = [r.getMessage() for r in caplog.records]
    assert "plugin 'broken' failed in on_rollout_finished: RuntimeError: listener bug in run-1" in (
        messages
    )
    assert (
        "plugin 'broken' failed in on_stage_finished: RuntimeError: listener bug after gather"
        in (messages)
    )


def test_execute_stage_notifies_on_stage_finished_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = Listener()
    registry = _registry(("listener", listener))
    monkeypatch.setattr(stage_base, "get_registry", lambda: registry)
    store = LocalArtifactStore(tmp_path)
    config = _config(tmp_path)

    result = execute_stage(_stage, "demo", config, "run-1", store=store)
    expected = {"report": store.uri("runs/run-1/demo/out.json")}
    assert result.outputs == expected
    assert listener.stages == [{"run_id": "run-1", "stage": "demo", "outputs": expected}]

    # A finished stage run again for the same run id is reused: nothing new finished.
    again = execute_stage(_stage, "demo", config, "run-1", store=store)
    assert again.resumed and len(listener.stages) == 1
    execute_stage(_stage, "demo", config, "run-1", store=store, force=True)
    assert len(listener.stages) == 2


def test_a_raising_stage_listener_does_not_fail_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registry = _registry(("broken", Broken()))
    monkeypatch.setattr(stage_base, "get_registry", lambda: registry)
    store = LocalArtifactStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="chimera.plugins"):
        result = execute_stage(_stage, "demo", _config(tmp_path), "run-2", store=store)
    assert result.outputs and not result.resumed
    assert store.exists("runs/run-2/demo/result.json")
    assert any("listener bug after demo" in r.getMessage() for r in caplog.records)
