"""`make airflow`'s script serves the DAGs; a run triggered through the REST API succeeds.

Starts ``scripts/airflow_local.sh`` once (api-server, scheduler, dag-processor, triggerer on
127.0.0.1, SQLite in a temporary AIRFLOW_HOME), logs in through the simple auth manager's
``/auth/token``, unpauses ``chimera_training`` and triggers it through the REST API, as the UI's
trigger form does:

- ``stages=["ingest"]``: the ingest task runs the real ``chimera stage ingest`` on the PubMedQA
  file (behind a wrapper that prints a few lines slowly first); its log shows those lines while
  the task runs and ends with a summary of the result; the other stages (board included) are
  skipped without ever starting (try number 0).
- an unknown profile: the run fails at once, its ingest task after one try (a user error is not
  retried; a retry would wait 5 minutes).

Every component is stopped afterwards, also when a test fails.

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

from chimera_core.config.models import PIPELINE_STAGES
from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "airflow_local.sh"
DAG_ID = "chimera_training"
STAGES = list(PIPELINE_STAGES)  # the DAG's stages: the local profile keeps the default

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


SLOW_WRAPPER = """#!/usr/bin/env bash
# chimera, with a few lines printed slowly before the ingest stage: the log must show them live
if [[ "$2" == ingest ]]; then
    for i in 1 2 3; do echo "wrapper: tick $i"; sleep 2; done
fi
exec {chimera} "$@"
"""


@pytest.fixture(scope="module")
def local_airflow(
    tmp_path_factory: pytest.TempPathFactory, pubmedqa_file: Path
) -> Iterator[LocalAirflow]:
    tmp_path = tmp_path_factory.mktemp("local_airflow")
    wrapper = tmp_path / "chimera"
    wrapper.write_text(SLOW_WRAPPER.format(chimera=REPO / ".venv" / "bin" / "chimera"))
    wrapper.chmod(0o755)
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
            "AIRFLOW_LOCAL_CHIMERA": str(wrapper),
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


def _task_instances(af: LocalAirflow, token: str, run_id: str) -> dict[str, dict[str, Any]]:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    return {ti["task_id"]: ti for ti in af.call("GET", path, token=token)["task_instances"]}


def _log_lines(af: LocalAirflow, token: str, run_id: str, task_id: str) -> list[str]:
    """The messages of a task's first try, as the UI's log view gets them (so far), and the
    type and message of an exception it logged."""
    path = (
        f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        "/logs/1?full_content=true"
    )
    try:
        content = af.call("GET", path, token=token).get("content") or []
    except urllib.error.HTTPError:
        return []  # no log yet
    lines = []
    for entry in content:
        if not isinstance(entry, dict):
            lines.append(str(entry))
            continue
        lines.append(str(entry.get("event", "")))
        for error in entry.get("error_detail") or []:  # an exception: type and message
            lines.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
    return lines


def _trigger(af: LocalAirflow, token: str, conf: dict[str, Any]) -> str:
    run = af.call(
        "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf}, token=token
    )
    assert run["conf"] == conf
    return str(run["dag_run_id"])


@pytest.fixture(scope="module")
def token(local_airflow: LocalAirflow) -> str:
    af = local_airflow
    token = af.token()
    dag = _wait_for_dag(af, token)
    assert dag["is_paused"] is True  # DAGs start paused
    assert dag["timetable_summary"] is None  # the schedule override reached the DAG processor
    af.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False}, token=token)
    return token


def test_trigger_form_offers_the_stages_as_a_multi_select(
    local_airflow: LocalAirflow, token: str
) -> None:
    details = local_airflow.call("GET", f"/api/v2/dags/{DAG_ID}/details", token=token)
    schema = details["params"]["stages"]["schema"]
    # The UI's FlexibleForm renders an array with `examples` as a multi-select of them.
    assert schema["type"] == "array"
    assert schema["examples"] == STAGES
    assert schema["items"]["enum"] == STAGES
    # A name outside the list is refused when the run is triggered, with the allowed names.
    with pytest.raises(urllib.error.HTTPError) as info:
        _trigger(local_airflow, token, {"stages": ["ingst"]})
    assert info.value.code == 400
    assert "'ingst' is not one of" in info.value.read().decode()


@pytest.mark.timeout(420)
def test_rest_triggered_ingest_run_succeeds(local_airflow: LocalAirflow, token: str) -> None:
    af = local_airflow
    run_id = _trigger(af, token, {"stages": ["ingest"]})

    # The stage's output reaches the task log while the task runs.
    deadline = time.monotonic() + 180
    while True:
        state = _task_instances(af, token, run_id).get("ingest", {}).get("state")
        lines = _log_lines(af, token, run_id, "ingest")
        if "wrapper: tick 1" in lines:
            break
        assert state in {None, "scheduled", "queued", "running"}, (state, lines)
        assert time.monotonic() < deadline, ("no output of the running stage in its log", lines)
        time.sleep(0.5)
    assert state == "running", "the first line showed only once the task had finished"

    state = _wait_for_run(af, token, run_id)
    tis = _task_instances(af, token, run_id)
    states = {task_id: ti["state"] for task_id, ti in tis.items()}
    assert state == "success", (states, af.log.read_text())
    assert states == {
        "select_stages": "success",
        "ingest": "success",
        **{s: "skipped" for s in STAGES[1:]},
        "done": "success",
    }
    # without a schedule, unpausing started no run of its own: only the triggered one exists
    runs = af.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", token=token)["dag_runs"]
    assert {r["run_type"] for r in runs} == {"manual"}, runs
    # left-out stages were skipped before they started: no try, no process
    assert {tis[s]["try_number"] for s in STAGES[1:]} == {0}
    # the task log ends with a short summary, not the result's JSON (that is the XCom)
    lines = _log_lines(af, token, run_id, "ingest")
    summary = [i for i, line in enumerate(lines) if line.startswith("stage ingest done in ")]
    assert summary, lines
    assert any(line.startswith("  output tasks: ") for line in lines[summary[0] :]), lines
    assert not any(line.startswith('{"stage"') for line in lines), lines
    # the task ran .venv's chimera with the environment the script passed on
    assert list(af.artifacts.glob("datasets/pubmedqa/seed-*/tasks.jsonl")), sorted(
        str(p) for p in af.artifacts.rglob("*")
    )
    assert list(af.artifacts.glob("runs/*/ingest/result.json"))

    if shot := os.environ.get("AIRFLOW_LOCAL_SCREENSHOT"):
        sys.path.insert(0, str(REPO / "scripts"))
        from airflow_screenshot import screenshot

        screenshot(af.url, token, DAG_ID, REPO / shot, run_id=run_id)


@pytest.mark.timeout(300)
def test_unknown_profile_fails_at_once_without_retries(
    local_airflow: LocalAirflow, token: str
) -> None:
    af = local_airflow
    run_id = _trigger(af, token, {"stages": ["ingest"], "profile": "no-such-profile"})
    started = time.monotonic()
    assert _wait_for_run(af, token, run_id, timeout=180) == "failed"
    assert time.monotonic() - started < 120  # a retry alone would wait 5 minutes
    ingest = _task_instances(af, token, run_id)["ingest"]
    assert (ingest["state"], ingest["try_number"]) == ("failed", 1)
    lines = "\n".join(_log_lines(af, token, run_id, "ingest"))
    assert "unknown profile 'no-such-profile'" in lines
    assert "user error (exit 2), not retried" in lines
