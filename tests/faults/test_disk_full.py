"""The disk fills up while a stage writes: the stage fails naming the store, the key and the OS
error (exit 1, no traceback), publishes nothing, and a rerun once space is back completes with
what a clean run gives, redoing only what was lost.

The disk is "full" where the local store writes its temp files (``scripted_gather.disk_full``);
the gather's rollout session runs in this process with Agent Lightning's real store and
``RunInputs`` (``scripted_gather.scripted_sessions``). The last test runs the real gather
(session and runner processes, a scripted model server) with the fault planted in each process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.cli.main import main
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.plugins import get_registry
from tests.faults import full_disk_plugin
from tests.faults.scripted_gather import disk_full, files, gather_args, profile, scripted_sessions


def _stage_dir(tmp_path: Path, run_id: str, stage: str = "gather") -> Path:
    return tmp_path / "artifacts" / "runs" / run_id / stage


def _records(tmp_path: Path, run_id: str) -> dict[str, RolloutRecord]:
    folder = _stage_dir(tmp_path, run_id) / "rollouts" / "records"
    return {
        p.stem: RolloutRecord.model_validate_json(p.read_text())
        for p in sorted(folder.glob("*.json"))
    }


def _spans(tmp_path: Path, run_id: str) -> set[str]:
    return {p.stem for p in (_stage_dir(tmp_path, run_id) / "rollouts" / "spans").glob("*.json")}


def _result(tmp_path: Path, run_id: str, stage: str = "gather") -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        (_stage_dir(tmp_path, run_id, stage) / "result.json").read_text()
    )
    return result


def _store_uri(tmp_path: Path) -> str:
    return (tmp_path / "artifacts").resolve().as_uri()


def test_disk_full_mid_gather_fails_naming_the_store_and_a_rerun_runs_only_the_lost_rollouts(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prof = profile(tmp_path, pubmedqa_file)
    assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(prof)]) == 0
    datasets = {p: (tmp_path / "artifacts" / p).read_bytes() for p in files(tmp_path / "artifacts")}
    full = threading.Event()

    def fill_disk(i: int, task_id: str) -> None:  # once the first rollout is saved, all of it
        if i == 0 and len(sessions.ran) == 1:
            full.set()

    sessions = scripted_sessions(monkeypatch, fill_disk)
    refusal = disk_full(monkeypatch, lambda target: full.is_set())

    assert main(gather_args("r1", prof)) == 1  # a fault
    err = capsys.readouterr().err
    first, *lost = sessions.ran[0]
    assert len(lost) == 2 and refusal.refused
    assert "2 rollout(s) lost their traces" in err
    records_uri = f"{_store_uri(tmp_path)}/runs/r1/gather/rollouts/records"
    for task_id in lost:
        assert f"task {task_id} (record {records_uri}/{task_id}.json)" in err
    assert f"the artifact store {_store_uri(tmp_path)} is not writable" in err
    assert "[Errno 28] No space left on device" in err
    assert "rerun the same command" in err
    assert "Traceback" not in err and "internal error" not in err
    # Nothing published: no result, no metrics upload, no lock left, no temp file; the dataset
    # and the run's pin untouched; the first rollout's record and spans kept.
    gather = _stage_dir(tmp_path, "r1")
    assert files(gather) == [f"rollouts/records/{first}.json", f"rollouts/spans/{first}.json"]
    assert {p: (tmp_path / "artifacts" / p).read_bytes() for p in datasets} == datasets
    assert not [p for p in files(tmp_path / "artifacts") if p.endswith(".part")]
    kept = _records(tmp_path, "r1")[first].rollout_id

    full.clear()  # space is back: the same command completes
    assert main(gather_args("r1", prof)) == 0
    assert sessions.ran[1] == lost  # exactly the rollouts without a saved record ran again
    records = _records(tmp_path, "r1")
    assert set(records) == {first, *lost} and all(r.status == "succeeded" for r in records.values())
    assert records[first].rollout_id == kept
    assert _spans(tmp_path, "r1") == set(records)

    # What a clean run of the same tasks gives.
    assert main(gather_args("clean", prof)) == 0
    assert _result(tmp_path, "r1")["metrics"] == _result(tmp_path, "clean")["metrics"]
    assert _result(tmp_path, "r1")["metrics"]["n_succeeded"] == 3


def test_spans_the_store_refused_fail_the_stage_and_only_that_rollout_runs_again(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The case of the report: the record was saved ("succeeded"), the spans were not. That
    # used to count as a succeeded rollout with 0 spans, and the stage published its result.
    prof = profile(tmp_path, pubmedqa_file)
    assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(prof)]) == 0
    sessions = scripted_sessions(monkeypatch)

    def second_spans(target: Path) -> bool:  # only in the first session, then space is back
        ran = sessions.ran[0] if len(sessions.ran) == 1 else []
        return target.parent.name == "spans" and len(ran) > 1 and target.stem == ran[1]

    disk_full(monkeypatch, second_spans)
    caplog.set_level(logging.ERROR)
    assert main(gather_args("r1", prof)) == 1
    err = capsys.readouterr().err
    lost = sessions.ran[0][1]
    spans_uri = f"{_store_uri(tmp_path)}/runs/r1/gather/rollouts/spans/{lost}.json"
    assert f"1 rollout(s) lost their traces: task {lost} (spans {spans_uri})" in err
    assert "Traceback" not in err
    # The session's log names the file and the OS error.
    assert f"write of {spans_uri}" in caplog.text and "No space left on device" in caplog.text
    assert _records(tmp_path, "r1")[lost].status == "succeeded"  # its record was saved
    assert not (_stage_dir(tmp_path, "r1") / "result.json").exists()
    before = {t: r.rollout_id for t, r in _records(tmp_path, "r1").items()}

    assert main(gather_args("r1", prof)) == 0
    assert sessions.ran[1] == [lost]
    after = {t: r.rollout_id for t, r in _records(tmp_path, "r1").items()}
    assert {t: v for t, v in after.items() if t != lost} == {
        t: v for t, v in before.items() if t != lost
    }
    assert after[lost] != before[lost] and _spans(tmp_path, "r1") == set(after)
    assert _result(tmp_path, "r1")["metrics"]["n_succeeded"] == 3


def test_a_training_stage_whose_result_was_refused_is_not_reused_half_done(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    prof = profile(tmp_path, pubmedqa_file)
    scripted_sessions(monkeypatch)
    for run_id in ("r1", "clean"):
        assert main(["stage", "ingest", "--run-id", run_id, "--profile", str(prof)]) == 0
        assert main(gather_args(run_id, prof)) == 0
    store = LocalArtifactStore(tmp_path / "artifacts")
    bandit = ["stage", "bandit", "--profile", str(prof), "--run-id"]
    assert main([*bandit, "clean"]) == 0
    result_json = _stage_dir(tmp_path, "r1", "bandit") / "result.json"
    refusal = disk_full(monkeypatch, lambda target: target == result_json)

    # The version is registered, then the disk is full for the stage's result.
    assert main([*bandit, "r1"]) == 1
    err = capsys.readouterr().err
    assert refusal.refused == [result_json]
    assert f"write of {result_json.as_uri()}" in err and "No space left on device" in err
    assert "Traceback" not in err
    assert not result_json.exists()
    assert not store.exists("models/supervisor_policy/champion.json")  # nothing promoted

    monkeypatch.undo()  # space is back (and the real rollout session: none is needed)
    caplog.set_level(logging.WARNING)
    assert main([*bandit, "r1"]) == 0
    result = _result(tmp_path, "r1", "bandit")
    # The unfinished attempt's version is kept but not reused: this attempt's is beside it.
    assert result["outputs"]["version"] == "bandit-r1-2"
    assert "version bandit-r1 of supervisor_policy was registered by an earlier attempt" in (
        caplog.text
    )
    versions = sorted(
        p.name for p in (tmp_path / "artifacts/models/supervisor_policy/versions").iterdir()
    )
    assert versions == ["bandit-clean", "bandit-r1", "bandit-r1-2"]
    assert not store.exists("models/supervisor_policy/champion.json")
    # What a clean run trains: the same policy from the same data, the same metrics.
    clean = _result(tmp_path, "clean", "bandit")
    assert result["metrics"] == clean["metrics"]

    def trained(version: str) -> dict[str, Any]:
        manifest = store.get_json(f"models/supervisor_policy/versions/{version}/manifest.json")
        return {name: info["sha256"] for name, info in manifest["files"].items()}

    assert trained("bandit-r1-2") == trained("bandit-clean")


@pytest.mark.slow
def test_a_real_gather_on_a_disk_that_fills_up_fails_and_resumes(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The gather of tests/faults/test_gather_faults.py (runner and session processes, a scripted
    model server); the disk fills up in every process once the first rollout's spans are saved."""
    from tests.lab.fake_openai import fake_openai_server

    flag = tmp_path / "disk-is-full"
    monkeypatch.setenv(full_disk_plugin.FLAG_ENV, str(flag))
    monkeypatch.setenv("CHIMERA_PLUGIN_MODULES", full_disk_plugin.__name__)
    monkeypatch.setattr(LocalArtifactStore, "_write_temp", LocalArtifactStore._write_temp)
    full_disk_plugin.install()  # in this process too (undone with the line above)
    get_registry.cache_clear()
    spans = _stage_dir(tmp_path, "r1") / "rollouts" / "spans"

    def fill_disk_after_first_spans() -> None:
        deadline = time.monotonic() + 300
        while not list(spans.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        flag.touch()

    try:
        with fake_openai_server(delay_s=0.2) as fake:
            prof = profile(tmp_path, pubmedqa_file, fake.url)
            assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(prof)]) == 0
            filler = threading.Thread(target=fill_disk_after_first_spans, daemon=True)
            filler.start()
            assert main(gather_args("r1", prof)) == 1
            filler.join(5)
            err = capsys.readouterr().err
            assert "No space left on device" in err and "lost their traces" in err
            assert f"the artifact store {_store_uri(tmp_path)} is not writable" in err
            assert not (_stage_dir(tmp_path, "r1") / "result.json").exists()
            before = _records(tmp_path, "r1")
            saved = {t for t, r in before.items() if r.status == "succeeded"} & _spans(
                tmp_path, "r1"
            )
            assert saved and len(saved) < 3
            for task_id in set(before) - saved:
                assert f"records/{task_id}.json" in err or f"spans/{task_id}.json" in err

            flag.unlink()  # space is back
            assert main(gather_args("r1", prof)) == 0
    finally:
        get_registry.cache_clear()
    after = _records(tmp_path, "r1")
    assert len(after) == 3 and all(r.status == "succeeded" for r in after.values())
    for task_id in saved:
        assert after[task_id].rollout_id == before[task_id].rollout_id  # not run again
    assert _spans(tmp_path, "r1") == set(after)
    assert _result(tmp_path, "r1")["metrics"]["n_succeeded"] == 3
