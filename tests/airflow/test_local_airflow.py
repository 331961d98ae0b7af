"""`make airflow`'s script serves the DAGs; a run triggered through the REST API succeeds.

Starts ``scripts/airflow_local.sh`` (api-server, scheduler, dag-processor, triggerer on
127.0.0.1, SQLite in a temporary AIRFLOW_HOME), logs in through the simple auth manager's
``/auth/token``, unpauses ``chimera_training`` and triggers it with ``stages=["ingest"]``: the
ingest task runs the real ``chimera stage ingest`` on the PubMedQA file, the other six exit as
skipped. Every component is stopped afterwards, also when the test fails.

Set ``AIRFLOW_LOCAL_SCREENSHOT=docs/img/airflow-dag-run.png`` to also save a screenshot of the
run's page (needs Playwright for Python and Debian's chromium).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "airflow_local.sh"
DAG_ID = "chimera_training"
STAGES = ["ingest", "gather", "sft", "ppo", "bandit", "evaluate", "promote"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (REPO / ".venv" / "bin" / "chimera").exists(),
        reason="needs .venv's chimera CLI for the stage tasks (make setup)",
    ),
]


@dataclass
class LocalAirflow:
    url: str
    password: str
    home: Path
    artifacts: Path
    log: Path

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def token(self) -> str:
        answer = self.call("POST", "/auth/token", {"username": "admin", "password": self.password})
        return str(answer["access_token"])


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without Airflow or Chimera settings (the tests set some)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "CHIMERA_")) and k != "PYTHONPATH"
    }
    return {**env, **extra}


def _stop(proc: subprocess.Popen[bytes], home: Path) -> None:
    """SIGTERM the script (it stops its components); then KILL whatever is left."""
    pid_file = home / "components.pid"
    groups = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
    for pgid in [*groups, proc.pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def local_airflow(tmp_path: Path, pubmedqa_file: Path) -> Iterator[LocalAirflow]:
    home = tmp_path / "airflow"
    artifacts = tmp_path / "artifacts"
    port = free_port()
    password = "chimera-test-pw"
    env = _clean_env(
        {
            "AIRFLOW_LOCAL_HOME": str(home),
            "AIRFLOW_LOCAL_PORT": str(port),
            "AIRFLOW_LOCAL_PASSWORD": password,
            "AIRFLOW_LOCAL_VENV": str(Path(sys.executable).parent.parent),
            "AIRFLOW_LOCAL_GRACE_S": "15",
            # No nightly run on unpause; artifacts and tracking stay in this test's tmp dir.
            "CHIMERA_ORCHESTRATION__SCHEDULE": "null",
            "CHIMERA_ARTIFACTS__LOCAL_ROOT": str(artifacts),
            "CHIMERA_TRACKING__WANDB_MODE": "disabled",
            "CHIMERA_PUBMEDQA_FILE": str(pubmedqa_file),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }
    )
    log = tmp_path / "airflow_local.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(SCRIPT)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "airflow_local: ready" not in log.read_text():
            if proc.poll() is not None:
                pytest.fail(f"airflow_local.sh exited {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"Airflow not ready after 180 s:\n{log.read_text()}")
            time.sleep(1)
        yield LocalAirflow(f"http://127.0.0.1:{port}", password, home, artifacts, log)
    finally:
        _stop(proc, home)
        assert "airflow_local: stopped" in log.read_text(), log.read_text()


def _wait_for_dag(af: LocalAirflow, token: str, timeout: float = 120) -> dict[str, Any]:
    """The DAG as the API sees it, once the dag-processor has parsed it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dict(af.call("GET", f"/api/v2/dags/{DAG_ID}", token=token))
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(2)


def _wait_for_run(af: LocalAirflow, token: str, run_id: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    while time.monotonic() < deadline:
        state = str(af.call("GET", path, token=token)["state"])
        if state in {"success", "failed"}:
            return state
        time.sleep(3)
    raise AssertionError(f"run {run_id} not finished after {timeout:.0f} s")


@pytest.mark.timeout(420)
def test_rest_triggered_ingest_run_succeeds(local_airflow: LocalAirflow) -> None:
    af = local_airflow
    token = af.token()
    dag = _wait_for_dag(af, token)
    assert dag["is_paused"] is True  # DAGs start paused
    assert dag["timetable_summary"] is None  # the schedule override reached the DAG processor
    af.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False}, token=token)

    run = af.call(
        "POST",
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"stages": ["ingest"]}},
        token=token,
    )
    run_id = run["dag_run_id"]
    assert run["conf"] == {"stages": ["ingest"]}
    state = _wait_for_run(af, token, run_id)

    tis = af.call(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances", token=token
    )
    states = {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}
    assert state == "success", (states, af.log.read_text())
    assert states == {"ingest": "success", **{s: "skipped" for s in STAGES[1:]}}
    # the task ran .venv's chimera with the environment the script passed on
    assert list(af.artifacts.glob("datasets/pubmedqa/seed-*/tasks.jsonl")), sorted(
        str(p) for p in af.artifacts.rglob("*")
    )
    assert list(af.artifacts.glob("runs/*/ingest/result.json"))

    if shot := os.environ.get("AIRFLOW_LOCAL_SCREENSHOT"):
        sys.path.insert(0, str(REPO / "scripts"))
        from airflow_screenshot import screenshot

        screenshot(af.url, token, DAG_ID, REPO / shot, run_id=run_id)
