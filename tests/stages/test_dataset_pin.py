"""A run pins its dataset version once; a resumed stage never takes whatever became current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.cli.main import main
from chimera_core.config import load_config
from chimera_core.data.dataset import (
    DATASET_PREFIX,
    current_version,
    load_task_dataset,
    publish_task_dataset,
)
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import DataError
from chimera_core.plugins import get_registry
from chimera_core.stages import gather, ingest
from chimera_core.stages.base import StageContext, execute_stage


def _tasks(prefix: str) -> list[ResearchTask]:
    return [
        ResearchTask(id=f"{prefix}{i}", goal="g", context="c", expected_decision="yes", split=s)
        for s in ("train", "validation")
        for i in range(3)
    ]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalArtifactStore:
    monkeypatch.chdir(tmp_path)  # the local profile's store: .chimera/artifacts
    return LocalArtifactStore(tmp_path / ".chimera" / "artifacts")


def _ctx(store: LocalArtifactStore, run_id: str, stage: str = "gather") -> StageContext:
    return StageContext(load_config("local", environ={}), run_id, stage, store, get_registry())


def test_a_resumed_run_keeps_its_pinned_dataset_after_another_became_current(
    store: LocalArtifactStore,
) -> None:
    first = publish_task_dataset(store, _tasks("a"), "test", "seed").version
    assert {t.id for t in _ctx(store, "r1").tasks()} == {f"a{i}" for i in range(3)}
    pin = json.loads(store.get_bytes("runs/r1/dataset.json"))
    assert pin["version"] == first and pin["pinned_by"] == "gather"

    second = publish_task_dataset(store, _tasks("b"), "test", "stratified").version
    assert current_version(store) == second != first
    resumed = _ctx(store, "r1", "evaluate")  # a later stage, or the gather resumed
    assert resumed.dataset_version() == first
    assert {t.id[0] for t in resumed.tasks()} == {"a"}  # never a mix of two splits
    assert json.loads(store.get_bytes("runs/r1/dataset.json")) == pin  # pinned once
    assert _ctx(store, "r2").dataset_version() == second  # a new run takes the current one


def test_a_run_with_an_ingest_stage_is_pinned_to_what_it_ingested(
    store: LocalArtifactStore, pubmedqa_file: Path
) -> None:
    overrides = {"data.source": "file", "data.file": str(pubmedqa_file), "data.split": "seed"}
    config = load_config("local", overrides=overrides, environ={})
    result = execute_stage(ingest.run, "ingest", config, "r1", store=store)
    version = result.outputs["dataset_version"]
    pin = json.loads(store.get_bytes("runs/r1/dataset.json"))
    assert pin["version"] == version and pin["pinned_by"] == "ingest"
    publish_task_dataset(store, _tasks("b"), "test", "stratified")  # another becomes current
    assert _ctx(store, "r1").dataset_version() == version
    assert _ctx(store, "r1").tasks() == load_task_dataset(store, version)[1]


def test_a_pinned_version_that_is_gone_is_named_and_nothing_runs(
    store: LocalArtifactStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = publish_task_dataset(store, _tasks("a"), "test", "seed").version
    _ctx(store, "r1").dataset_version()  # pinned
    publish_task_dataset(store, _tasks("b"), "test", "stratified")
    for key in list(store.list(f"{DATASET_PREFIX}/{first}")):
        store.delete(key)

    with pytest.raises(DataError, match=f"run 'r1' is pinned to dataset version '{first}'"):
        _ctx(store, "r1").tasks()

    def no_rollouts(*args: object, **kwargs: object) -> None:
        raise AssertionError("no rollout may start on another dataset")

    monkeypatch.setattr(gather, "served_rollouts", no_rollouts)
    before = sorted(store.list("runs"))
    assert main(["stage", "gather", "--run-id", "r1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"pinned to dataset version '{first}'" in err and "which is gone" in err
    assert "Traceback" not in err
    assert sorted(store.list("runs")) == before  # no result, no lock, the pin unchanged


def test_stages_of_one_run_started_together_agree_on_one_version(
    store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = publish_task_dataset(store, _tasks("a"), "test", "seed").version
    late = _ctx(store, "r1", "evaluate")
    real_pinned = StageContext._pinned
    looked: list[bool] = []

    def racing_pinned(self: StageContext) -> str | None:
        if not looked:  # ``late`` looks before the other stage pinned, and ...
            looked.append(True)
            assert _ctx(store, "r1", "gather").dataset_version() == first  # ... it pins now
            publish_task_dataset(store, _tasks("b"), "test", "stratified")  # then a new current
            return None
        return real_pinned(self)

    monkeypatch.setattr(StageContext, "_pinned", racing_pinned)
    assert late.dataset_version() == first  # the pin that got there first, not the current
