"""Storage errors mid-upload: a gather on S3 whose uploads lose their connections.

The store is a real S3 server (moto) behind a TCP proxy that cuts PUT connections halfway
through the body (``tests/artifacts/fault_proxy.py``). Dropped uploads are retried with
backoff and the stage ends with what a clean run gives; uploads that keep failing fail the
stage as a fault naming the lost rollouts, and a rerun completes with the saved ones kept.
The rollout session runs in this process (``scripted_gather``), so these take seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chimera_core.artifacts.s3 import S3ArtifactStore
from chimera_core.cli.main import main
from chimera_core.data.rollouts import RolloutRecord
from tests.artifacts.conftest import TEST_ACCESS_KEY, TEST_SECRET_KEY, make_s3_store, unique_bucket
from tests.artifacts.fault_proxy import FaultProxy
from tests.faults.scripted_gather import gather_args, profile, scripted_sessions


@pytest.fixture
def bucket(s3_server: str) -> str:
    name = unique_bucket()
    assert make_s3_store(s3_server, name).ensure_bucket() is True
    return name


def _s3_profile(tmp_path: Path, data_file: Path, endpoint: str, bucket: str) -> Path:
    """The scripted-gather profile with its artifacts in the bucket, reached at endpoint."""
    data: dict[str, Any] = yaml.safe_load(profile(tmp_path, data_file).read_text())
    data["artifacts"] = {
        "backend": "s3",
        "endpoint": endpoint,
        "bucket": bucket,
        "prefix": "lab",
        "access_key": TEST_ACCESS_KEY,
        "secret_key": TEST_SECRET_KEY,
        "max_retries": 2,
    }
    path = tmp_path / f"profile-{endpoint.replace(':', '-')}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _trace_dataset(store: S3ArtifactStore, run_id: str) -> dict[str, tuple[str, bool]]:
    """Task id -> (status, spans saved) of a run's gather, read back from the bucket."""
    prefix = f"runs/{run_id}/gather/rollouts"
    out = {}
    for key in store.list(f"{prefix}/records"):
        record = RolloutRecord.model_validate_json(store.get_bytes(key))
        out[record.task_id] = (record.status, store.exists(f"{prefix}/spans/{record.task_id}.json"))
    return out


def test_uploads_cut_mid_transfer_are_retried_and_the_gather_equals_a_clean_one(
    tmp_path: Path, pubmedqa_file: Path, s3_server: str, bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    direct = _s3_profile(tmp_path, pubmedqa_file, s3_server, bucket)
    assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(direct)]) == 0
    assert main(["stage", "ingest", "--run-id", "clean", "--profile", str(direct)]) == 0
    scripted_sessions(monkeypatch)
    assert main(gather_args("clean", direct)) == 0

    with FaultProxy(s3_server, drop_puts_every=3, lifetime=120) as proxy:
        faulty = _s3_profile(tmp_path, pubmedqa_file, proxy.endpoint, bucket)
        assert main(gather_args("r1", faulty)) == 0
    assert proxy.put_drops >= 3  # records, spans and the result went through the cuts

    store = make_s3_store(s3_server, bucket, prefix="lab")
    clean = _trace_dataset(store, "clean")
    assert len(clean) == 3 and all(v == ("succeeded", True) for v in clean.values())
    assert _trace_dataset(store, "r1") == clean
    r1 = store.get_json("runs/r1/gather/result.json")["metrics"]
    assert r1 == store.get_json("runs/clean/gather/result.json")["metrics"]
    assert not [k for k in store.list("runs/r1") if k.endswith(".part")]


def test_uploads_that_keep_failing_fail_the_gather_and_a_rerun_completes(
    tmp_path: Path, pubmedqa_file: Path, s3_server: str, bucket: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    direct = _s3_profile(tmp_path, pubmedqa_file, s3_server, bucket)
    assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(direct)]) == 0
    with FaultProxy(s3_server, lifetime=300) as proxy:

        def cut_every_upload(i: int, task_id: str) -> None:  # the store goes away mid-stage
            if i == 0 and len(sessions.ran) == 1:
                proxy.drop_puts_every = 1

        sessions = scripted_sessions(monkeypatch, cut_every_upload)
        faulty = _s3_profile(tmp_path, pubmedqa_file, proxy.endpoint, bucket)
        assert main(gather_args("r1", faulty)) == 1  # a fault, after the retries
        err = " ".join(capsys.readouterr().err.split())
        first, *lost = sessions.ran[0]
        assert "2 rollout(s) lost their traces" in err
        assert all(f"task {task_id}" in err for task_id in lost)
        assert "Traceback" not in err
        store = make_s3_store(s3_server, bucket, prefix="lab")
        assert not store.exists("runs/r1/gather/result.json")  # nothing published
        kept = store.get_json(f"runs/r1/gather/rollouts/records/{first}.json")["rollout_id"]

        proxy.drop_puts_every = 0  # the store is back: the same command completes
        assert main(gather_args("r1", faulty)) == 0
    assert sessions.ran[1] == lost
    traces = _trace_dataset(store, "r1")
    assert set(traces) == {first, *lost} and all(v == ("succeeded", True) for v in traces.values())
    assert store.get_json(f"runs/r1/gather/rollouts/records/{first}.json")["rollout_id"] == kept
