"""Store faults for the fault tests, and a gather whose rollout session runs in this process.

``refuse_writes`` makes the local store's writes fail at the OS boundary (the temp file every
write goes through) with an errno, as a full disk or a read-only mount would, while a predicate
on the target path holds. ``scripted_sessions`` replaces the rollout session process of
``run_rollouts`` with one in this process: Agent Lightning's real in-memory store and Chimera's
real ``RunInputs`` (which saves the spans), the test playing the runner as the agent does (the
record saved with ``save_record``, one span, the attempt finished), one rollout at a time. So the
faults land where they would in a real gather, deterministically and in seconds.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import pytest
import yaml

from chimera_core.rollouts.agl_env import prepare_agl_environment

prepare_agl_environment()  # before Agent Lightning is imported (by the algorithm module)

import agentlightning as agl  # noqa: E402

from chimera_core.artifacts import LocalArtifactStore, open_store  # noqa: E402
from chimera_core.data.rollouts import RolloutRecord, SupervisorLog  # noqa: E402
from chimera_core.rollouts import algorithm as algorithm_module  # noqa: E402
from chimera_core.rollouts import runner as runner_module  # noqa: E402
from chimera_core.rollouts.algorithm import RunInputs  # noqa: E402
from chimera_core.rollouts.storage import save_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def profile(tmp_path: Path, data_file: Path, url: str = "http://127.0.0.1:9/v1") -> Path:
    """The local profile on remote (OpenAI-style) models, artifacts and tracking in tmp_path."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    for alias in data["models"].values():
        alias.update(backend="openai", base_url=url, max_retries=0, timeout_s=20)
    data["data"] = {"source": "file", "file": str(data_file)}
    data["artifacts"] = {"backend": "local", "local_root": str(tmp_path / "artifacts")}
    data["tracking"] = {"wandb_mode": "disabled", "wandb_dir": str(tmp_path / "wandb")}
    data["stages"]["gather"].update(n_runners=1, max_attempts=2, retry_backoff_s=0.1)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def gather_args(run_id: str, prof: Path) -> list[str]:
    """The command line of a three-task gather of run_id on the profile prof."""
    return ["stage", "gather", "--run-id", run_id, "--limit", "3", "--profile", str(prof)]


def files(root: Path) -> list[str]:
    """Every file under root (temp files included), relative, sorted."""
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@dataclass
class Refusal:
    """Which writes the store refuses (``when(target)``) and what it refused so far."""

    code: int
    when: Callable[[Path], bool]
    refused: list[Path] = field(default_factory=list)


def refuse_writes(
    monkeypatch: pytest.MonkeyPatch, code: int, when: Callable[[Path], bool] = lambda _: True
) -> Refusal:
    """Local store writes of a target for which ``when`` holds fail with OSError(code)."""
    refusal = Refusal(code, when)
    real = LocalArtifactStore._write_temp

    def write_temp(
        self: LocalArtifactStore, target: Path, write: Callable[[IO[bytes]], object]
    ) -> Path:
        if refusal.when(target):
            refusal.refused.append(target)
            raise OSError(code, os.strerror(code), str(target.parent / f".{target.name}.x.part"))
        return real(self, target, write)

    monkeypatch.setattr(LocalArtifactStore, "_write_temp", write_temp)
    return refusal


def disk_full(monkeypatch: pytest.MonkeyPatch, when: Callable[[Path], bool]) -> Refusal:
    """``No space left on device`` for the writes ``when`` picks."""
    return refuse_writes(monkeypatch, errno.ENOSPC, when)


class _Tracker:
    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass


class _Proxy:
    """The LLM proxy as ``RunInputs.run`` uses it: running, a resource per served name."""

    def is_running(self) -> bool:
        return True

    def as_resource(self, model: str | None = None) -> agl.ProxyLLM:
        return agl.ProxyLLM(endpoint="http://127.0.0.1:9/v1", model=model or "")


def record_for(spec: dict[str, Any], rollout_id: str) -> RolloutRecord:
    """What the agent records for a rollout that went well (a supervisor choice included)."""
    task = spec["task"]
    return RolloutRecord(
        rollout_id=rollout_id,
        run_id=spec["run_id"],
        stage=spec["stage"],
        task_id=task["id"],
        split=task["split"],
        status="succeeded",
        reward=1.0,
        expected_decision=task["expected_decision"],
        final_decision=task["expected_decision"],
        turns=3,
        latency_s=0.5,
        supervisor=SupervisorLog(hypotheses=["a", "b"], chosen=1, propensity=0.5),
        state={"research_goal": task["goal"]},
    )


@dataclass
class Sessions:
    """What the scripted sessions did: the task ids each one ran, in order."""

    ran: list[list[str]] = field(default_factory=list)


def scripted_sessions(
    monkeypatch: pytest.MonkeyPatch,
    after_rollout: Callable[[int, str], None] = lambda i, task_id: None,
    write_record: bool = True,
) -> Sessions:
    """Run ``run_rollouts``'s session in this process (see the module docstring).

    ``after_rollout(i, task_id)`` runs once rollout i is finished and its spans were saved or
    refused; ``write_record=False`` plays runners that die before writing their record.
    """
    sessions = Sessions()
    monkeypatch.setattr(algorithm_module, "POLL_S", 0.01)

    def session(
        config: Any, inputs: list[dict[str, Any]], endpoints: Any, n_runners: int, tracking: Any
    ) -> None:
        store = open_store(config.artifacts)
        served = {alias: model.served_model for alias, model in config.models.items()}
        algo = RunInputs(inputs, served, store, _Tracker())  # type: ignore[arg-type]
        lightning = agl.InMemoryLightningStore()
        proxy = _Proxy()  # held here: the algorithm keeps a weak reference
        algo.set_store(lightning)
        algo.set_llm_proxy(proxy)  # type: ignore[arg-type]
        ran: list[str] = []
        sessions.ran.append(ran)

        async def play_runner() -> None:
            for i in range(len(inputs)):
                rollout = None
                while rollout is None:
                    rollout = await lightning.dequeue_rollout()
                    await asyncio.sleep(0.005)
                spec = rollout.input
                ran.append(spec["task"]["id"])
                if write_record:
                    save_record(store, spec["record_key"], record_for(spec, rollout.rollout_id))
                span = agl.Span.from_attributes(
                    attributes={"node": "Geneticist"},
                    rollout_id=rollout.rollout_id,
                    attempt_id=rollout.attempt.attempt_id,
                    sequence_id=1,
                    name="Geneticist",
                )
                await lightning.add_span(span)
                await lightning.update_attempt(
                    rollout.rollout_id, rollout.attempt.attempt_id, status="succeeded"
                )
                key = spec["spans_key"]
                while not (store.exists(key) or key in algo.unsaved):
                    await asyncio.sleep(0.005)
                after_rollout(i, spec["task"]["id"])

        async def main() -> None:
            running = asyncio.create_task(algo.run())
            await play_runner()
            await asyncio.wait_for(running, timeout=30)

        asyncio.run(main())

    monkeypatch.setattr(runner_module, "_session", session)
    monkeypatch.setattr(runner_module, "multiprocessing", SimpleNamespace(get_context=_inline))
    return sessions


class _InlineProcess:
    """``multiprocessing.Process`` run in this process, at start()."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        self.target, self.args, self.exitcode = target, args, None

    def start(self) -> None:
        self.target(*self.args)
        self.exitcode = 0

    def join(self) -> None:
        pass


def _inline(method: str | None = None) -> SimpleNamespace:
    """What ``multiprocessing.get_context`` gives ``run_rollouts``: inline processes."""
    return SimpleNamespace(Process=_InlineProcess)
