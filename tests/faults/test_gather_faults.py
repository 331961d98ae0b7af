"""Faults during a real gather (Agent Lightning store, proxy, runners), a scripted model behind.

The model is a fake OpenAI (or fake vLLM) server, so these tests check the stage's bookkeeping:
a killed gather resumes without redoing finished rollouts; a model server that is down yields
failed records with their reason, a failed stage, and a rerun that completes once it is back;
one killed mid-gather is restarted, or, if it stays dead, reported as dead and a rerun
completes. Each ends with every task's record and spans, finished rollouts keeping their ids.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from chimera_core.cli.main import main
from chimera_core.data.rollouts import RolloutRecord
from tests.faults.scripted_gather import profile as scripted_profile
from tests.lab.fake_openai import fake_openai_server
from tests.net import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHIMERA = str(Path(sys.executable).parent / "chimera")


def _rollouts(tmp_path: Path, run_id: str) -> Path:
    return tmp_path / "artifacts" / "runs" / run_id / "gather" / "rollouts"


def _records(tmp_path: Path, run_id: str) -> dict[str, RolloutRecord]:
    folder = _rollouts(tmp_path, run_id) / "records"
    return {
        p.stem: RolloutRecord.model_validate_json(p.read_text())
        for p in sorted(folder.glob("*.json"))
    }


def test_a_killed_gather_resumes_without_redoing_finished_rollouts(
    tmp_path: Path, pubmedqa_file: Path
) -> None:
    with fake_openai_server(delay_s=0.3) as fake:
        profile = scripted_profile(tmp_path, pubmedqa_file, fake.url)
        assert main(["stage", "ingest", "--run-id", "r1", "--profile", str(profile)]) == 0
        args = [CHIMERA, "stage", "gather", "--run-id", "r1", "--limit", "3"]
        proc = subprocess.Popen(
            [*args, "--profile", str(profile)],
            cwd=tmp_path,
            start_new_session=True,  # its own process group: the kill reaches every runner
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        spans = _rollouts(tmp_path, "r1") / "spans"
        deadline = time.monotonic() + 300
        while not list(spans.glob("*.json")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no rollout finished in 300 s"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = _records(tmp_path, "r1")
        finished = {k: r for k, r in before.items() if r.status == "succeeded"}
        assert finished and len(finished) < 3, "the kill should land mid-stage"
        for task_id in finished:  # kept as it completed, not at the end of the stage
            assert (spans / f"{task_id}.json").stat().st_size > 2

        assert main([*args[1:], "--profile", str(profile)]) == 0

    after = _records(tmp_path, "r1")
    assert len(after) == 3 and all(r.status == "succeeded" for r in after.values())
    for task_id, record in finished.items():
        assert after[task_id].rollout_id == record.rollout_id  # not run again
    assert all((spans / f"{task_id}.json").stat().st_size > 2 for task_id in after)


def test_a_model_server_that_is_down_fails_each_rollout_with_its_reason(
    tmp_path: Path, pubmedqa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    profile = scripted_profile(tmp_path, pubmedqa_file, dead)
    args = ["stage", "gather", "--run-id", "down", "--limit", "2", "--profile", str(profile)]
    assert main(["stage", "ingest", "--run-id", "down", "--profile", str(profile)]) == 0

    assert main(args) == 2  # a user-facing failure, no traceback
    err = capsys.readouterr().err
    assert "2 of 2 rollouts failed" in err and "max_failure_rate" in err
    records = _records(tmp_path, "down")
    assert len(records) == 2
    for record in records.values():
        assert record.status == "failed" and record.attempts == 2
        assert "Connect" in (record.error or ""), record.error

    # The server comes back: the same command retries the failed rollouts and completes.
    with fake_openai_server() as fake:
        text = profile.read_text().replace(dead, fake.url)
        profile.write_text(text)
        assert main(args) == 0
    assert all(r.status == "succeeded" for r in _records(tmp_path, "down").values())


def _vllm_profile(tmp_path: Path, fake_vllm_python: str, data_file: Path, **serving: Any) -> Path:
    """The local profile on Chimera's (fake) vLLM server: the real lifecycle, canned replies."""
    from tests.conftest import TEST_MODELS

    data: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    for alias in data["models"].values():
        alias.update(max_retries=0, timeout_s=20)
    data["data"] = {"source": "file", "file": str(data_file)}
    data["artifacts"] = {"backend": "local", "local_root": str(tmp_path / "artifacts")}
    data["tracking"] = {"wandb_mode": "disabled", "wandb_dir": str(tmp_path / "wandb")}
    data["serving"] = {
        "vllm_python": fake_vllm_python,
        "models_dir": str(TEST_MODELS),
        "startup_timeout_s": 60,
        **serving,
    }
    data["stages"]["gather"].update(n_runners=1, max_attempts=2, retry_backoff_s=0.1)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _kill_server_after_first_record(tmp_path: Path, run_id: str) -> threading.Thread:
    """In the background: once a rollout finished, SIGKILL the model server's process group."""
    import psutil

    def kill() -> None:
        records = _rollouts(tmp_path, run_id) / "records"
        deadline = time.monotonic() + 300
        while not list(records.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        for child in psutil.Process().children(recursive=True):
            if "tests.serving.fake_vllm" in " ".join(child.cmdline()):
                os.killpg(child.pid, signal.SIGKILL)
                return

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_model_server_killed_mid_gather_is_restarted_and_the_stage_completes(
    tmp_path: Path, pubmedqa_file: Path, fake_vllm_python: str, caplog: pytest.LogCaptureFixture
) -> None:
    profile = _vllm_profile(tmp_path, fake_vllm_python, pubmedqa_file)
    os.environ["FAKE_VLLM_DELAY_S"] = "0.3"
    try:
        assert main(["stage", "ingest", "--run-id", "kill", "--profile", str(profile)]) == 0
        killer = _kill_server_after_first_record(tmp_path, "kill")
        args = ["stage", "gather", "--run-id", "kill", "--limit", "3", "--profile", str(profile)]
        assert main(args) == 0
        killer.join(5)
    finally:
        del os.environ["FAKE_VLLM_DELAY_S"]
    records = _records(tmp_path, "kill")
    assert len(records) == 3 and all(r.status == "succeeded" for r in records.values())
    assert "restarting it (1 of 1)" in caplog.text


def test_a_model_server_that_stays_dead_is_reported_as_such(
    tmp_path: Path,
    pubmedqa_file: Path,
    fake_vllm_python: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    profile = _vllm_profile(tmp_path, fake_vllm_python, pubmedqa_file, max_restarts=0)
    os.environ["FAKE_VLLM_DELAY_S"] = "0.3"
    try:
        assert main(["stage", "ingest", "--run-id", "dead", "--profile", str(profile)]) == 0
        killer = _kill_server_after_first_record(tmp_path, "dead")
        args = ["stage", "gather", "--run-id", "dead", "--limit", "3", "--profile", str(profile)]
        assert main(args) == 1  # a fault, not a user error
        killer.join(5)
        assert "the vLLM server died" in capsys.readouterr().err
        before = _records(tmp_path, "dead")
        finished = {k: r for k, r in before.items() if r.status == "succeeded"}
        assert finished, "the rollout that finished before the kill is kept"

        # Nothing lost: the same command starts a server again and completes the rest.
        assert main(args) == 0
    finally:
        del os.environ["FAKE_VLLM_DELAY_S"]
    after = _records(tmp_path, "dead")
    assert len(after) == 3 and all(r.status == "succeeded" for r in after.values())
    for task_id, record in finished.items():
        assert after[task_id].rollout_id == record.rollout_id  # not run again
    spans = _rollouts(tmp_path, "dead") / "spans"
    assert all((spans / f"{task_id}.json").stat().st_size > 2 for task_id in after)
