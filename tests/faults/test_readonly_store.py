"""A store that takes no writes (a read-only mount, a read-only S3 policy): every stage probes
it with a small write before it works, and fails at once, exit 1 with a message naming the
store and the OS or S3 error, no traceback, nothing written. Once the store takes writes, the
same command completes as a clean run does.

The local store refuses writes where the OS would (its temp file) with ``EROFS``
(``scripted_gather.refuse_writes``; tests run as root, so a chmod would not stop them).
"""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import urllib3
from minio.error import S3Error

from chimera_core.artifacts import PROBE_PREFIX
from chimera_core.artifacts.s3 import S3ArtifactStore
from chimera_core.cli.main import main
from chimera_core.config import load_config
from chimera_core.errors import ArtifactError, StorageFault
from chimera_core.stages.base import StageContext, StageResult, execute_stage
from tests.artifacts.conftest import make_s3_store, unique_bucket
from tests.faults.scripted_gather import (
    files,
    gather_args,
    profile,
    refuse_writes,
    scripted_sessions,
)

READ_ONLY = "[Errno 30] Read-only file system"


def _uri(root: Path) -> str:
    return root.resolve().as_uri()


def _clean_err(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err


def test_ingest_on_a_read_only_store_exits_1_naming_the_store_and_writes_nothing(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prof = profile(tmp_path, pubmedqa_file)
    store = tmp_path / "artifacts"
    store.mkdir()
    ingest = ["ingest", "--run-id", "i1", "--profile", str(prof)]
    with monkeypatch.context() as m:
        refuse_writes(m, errno.EROFS)
        assert main(ingest) == 1  # a fault, not "internal error"
    err = capsys.readouterr().err
    assert "stage 'ingest' of run 'i1' not started, nothing written" in err
    assert f"the artifact store {_uri(store)} is not writable" in err and READ_ONLY in err
    _clean_err(err)
    assert files(store) == []

    assert main(ingest) == 0  # writable again
    (tmp_path / "clean").mkdir()
    clean_prof = profile(tmp_path / "clean", pubmedqa_file)
    assert main(["ingest", "--run-id", "i1", "--profile", str(clean_prof)]) == 0
    clean = tmp_path / "clean" / "artifacts"
    assert files(store) == files(clean)
    tasks = [p for p in files(store) if p.endswith("tasks.jsonl")]  # the same version's tasks
    assert tasks and all((store / p).read_bytes() == (clean / p).read_bytes() for p in tasks)
    current = "datasets/pubmedqa/CURRENT.json"
    assert (
        json.loads((store / current).read_text())["version"]
        == (json.loads((clean / current).read_text())["version"])
    )


def test_gather_on_a_read_only_store_fails_before_any_rollout(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prof = profile(tmp_path, pubmedqa_file)
    assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(prof)]) == 0
    before = files(tmp_path / "artifacts")
    sessions = scripted_sessions(monkeypatch)
    with monkeypatch.context() as m:
        refuse_writes(m, errno.EROFS)
        assert main(gather_args("r1", prof)) == 1
    err = capsys.readouterr().err
    assert sessions.ran == []  # not one rollout (it used to run them all, then fail)
    assert "stage 'gather' of run 'r1' not started, nothing written" in err
    assert f"the artifact store {_uri(tmp_path / 'artifacts')} is not writable" in err
    assert READ_ONLY in err and "records kept" not in err
    _clean_err(err)
    assert files(tmp_path / "artifacts") == before  # no lock, no rollout, no result

    assert main(gather_args("r1", prof)) == 0
    assert len(sessions.ran) == 1 and len(sessions.ran[0]) == 3


def test_a_store_turning_read_only_mid_gather_is_named_not_blamed_on_a_dead_runner(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prof = profile(tmp_path, pubmedqa_file)
    assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(prof)]) == 0
    read_only = threading.Event()

    def remount(i: int, task_id: str) -> None:
        if i == 0 and len(sessions.ran) == 1:
            read_only.set()

    sessions = scripted_sessions(monkeypatch, remount)
    refuse_writes(monkeypatch, errno.EROFS, lambda target: read_only.is_set())
    assert main(gather_args("r1", prof)) == 1
    err = capsys.readouterr().err
    assert "2 rollout(s) lost their traces" in err and READ_ONLY in err
    assert f"the artifact store {_uri(tmp_path / 'artifacts')} is not writable" in err
    assert "runner died" not in err and "records kept" not in err
    _clean_err(err)
    assert not (tmp_path / "artifacts/runs/r1/gather/result.json").exists()

    read_only.clear()
    assert main(gather_args("r1", prof)) == 0
    assert sessions.ran[1] == sessions.ran[0][1:]


def test_runners_that_died_without_a_record_are_not_said_to_have_kept_any(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prof = profile(tmp_path, pubmedqa_file)
    assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(prof)]) == 0
    scripted_sessions(monkeypatch, write_record=False)  # the store is fine: runners died
    assert main(gather_args("r1", prof)) == 2
    err = capsys.readouterr().err
    assert "3 of 3 rollouts failed" in err
    assert "3 rollout(s) left no record: their runner died" in err
    assert "no record was written" in err and "records kept" not in err
    _clean_err(err)


def test_a_training_stage_on_a_read_only_store_trains_nothing(
    tmp_path: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prof = profile(tmp_path, pubmedqa_file)
    scripted_sessions(monkeypatch)
    assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(prof)]) == 0
    assert main(gather_args("r1", prof)) == 0
    before = files(tmp_path / "artifacts")
    bandit = ["stage", "bandit", "--run-id", "r1", "--profile", str(prof)]
    with monkeypatch.context() as m:
        refuse_writes(m, errno.EROFS)
        assert main(bandit) == 1
    err = capsys.readouterr().err
    assert "stage 'bandit' of run 'r1' not started" in err and READ_ONLY in err
    _clean_err(err)
    assert files(tmp_path / "artifacts") == before  # no version registered, no result
    assert main(bandit) == 0
    assert (tmp_path / "artifacts/models/supervisor_policy/versions/bandit-r1").is_dir()


# S3: the same probe, a refused PUT (a read-only policy) or a missing bucket.


def _access_denied(*args: Any, **kwargs: Any) -> None:
    raise S3Error(
        urllib3.response.HTTPResponse(status=403),
        "AccessDenied",
        "Access Denied",
        "/bucket/key",
        "request",
        "host",
    )


@pytest.fixture
def s3_store(s3_server: str) -> S3ArtifactStore:
    store = make_s3_store(s3_server, unique_bucket())
    store.ensure_bucket()
    return store


def test_the_s3_probe_leaves_nothing_behind(s3_store: S3ArtifactStore) -> None:
    s3_store.check_writable()
    assert list(s3_store.list()) == []


def test_a_read_only_s3_store_is_a_fault_naming_the_bucket_and_the_refusal(
    s3_store: S3ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_store._client, "put_object", _access_denied)
    with pytest.raises(StorageFault) as err:
        s3_store.check_writable()
    message = str(err.value)
    assert f"the artifact store s3://{s3_store.bucket}/team/run is not writable" in message
    assert (
        "AccessDenied" in message and f"s3://{s3_store.bucket}/team/run/{PROBE_PREFIX}" in message
    )
    assert err.value.exit_code == 1

    # A stage on it does not start: its function is never called, nothing is written.
    called: list[str] = []

    def stage(ctx: StageContext) -> StageResult:
        called.append(ctx.stage)
        return StageResult(stage=ctx.stage, run_id=ctx.run_id)

    config = load_config("local", environ={}, overrides={"serving.models_dir": str(tmp_path)})
    with pytest.raises(StorageFault, match="stage 'gather' of run 'r1' not started"):
        execute_stage(stage, "gather", config, "r1", store=s3_store)
    assert called == [] and list(s3_store.list()) == []


def test_a_missing_bucket_stays_a_config_error(s3_server: str) -> None:
    store = make_s3_store(s3_server, unique_bucket())
    with pytest.raises(ArtifactError, match=f"bucket '{store.bucket}' does not exist") as err:
        store.check_writable()
    assert not isinstance(err.value, StorageFault) and err.value.exit_code == 2
