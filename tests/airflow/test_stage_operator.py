"""The stage operator with a fake ``chimera`` (tests/airflow/fake_chimera.py): fast, no model.

Streaming output into the task log, skipping without a process, exit 2 failing without retries
while exit 1 is retried, the ``stages`` multi-select, and ``select_stages`` in a real DAG run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chimera_core.config.models import PIPELINE_STAGES

REPO = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_chimera.py")
FAKE_COMMAND = [sys.executable, str(FAKE)]
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
STAGES = list(PIPELINE_STAGES)  # the training DAG's stages with the default orchestration


class RecordingLog:
    """Stands in for the operator's logger: each message with the time it was logged."""

    def __init__(self) -> None:
        self.records: list[tuple[float, str]] = []

    def info(self, msg: str, *args: Any) -> None:
        self.records.append((time.monotonic(), msg % args if args else msg))

    warning = error = debug = exception = info

    @property
    def lines(self) -> list[str]:
        return [line for _, line in self.records]


def _operator(stage: str = "ingest", **kwargs: Any) -> tuple[Any, RecordingLog]:
    from chimera_airflow import ChimeraStageOperator

    recorder = RecordingLog()

    class Recorded(ChimeraStageOperator):
        @property
        def log(self) -> RecordingLog:  # type: ignore[override]
            return recorder

    op = Recorded(
        task_id=stage,
        stage=stage,
        command=FAKE_COMMAND,
        arguments=["stage", stage, "--run-id", "manual__test", "--json"],
        env={},
        **kwargs,
    )
    return op, recorder


def test_stage_output_reaches_the_log_while_the_stage_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_STAGE_LINES", "3")
    monkeypatch.setenv("FAKE_STAGE_SLEEP", "0.7")
    op, log = _operator()
    started = time.monotonic()
    result = op.execute({"params": {"stages": ["ingest"]}})
    ended = time.monotonic()

    times = {line: t for t, line in log.records}
    assert "ingest: step 1" in times and "ingest: step 3" in times, log.lines
    # Line by line as printed: the first line is logged ~1.4 s before the last, and well before
    # the process ends (a captured run would log every line after it).
    assert times["ingest: step 3"] - times["ingest: step 1"] > 1.0
    assert times["ingest: step 1"] - started < (ended - started) - 1.0
    # Progress redrawn in place ("\r") is logged at most every 10 s: the first redraw only;
    # the line that ends with a newline always.
    assert "ingest: progress 10%" in log.lines
    assert "ingest: progress 50%" not in log.lines
    assert "ingest: progress 100%" in log.lines
    assert "ingest: coloured" in log.lines  # terminal colour codes dropped
    # The result is the return value (XCom); the log ends with a short summary, not its JSON.
    assert result["outputs"] == {"data": "file:///tmp/fake/manual__test/ingest"}
    assert not any(line.startswith("{") for line in log.lines), log.lines
    summary = log.lines[log.lines.index("ingest: step 3") + 1 :]
    assert summary[0].startswith("stage ingest done in 1.5 s (")
    assert summary[1] == "  run id: manual__test"
    assert "  output data: file:///tmp/fake/manual__test/ingest" in summary
    assert "  n_tasks: 3" in summary and "  accuracy: 0.6667" in summary
    assert "  ... 1 more metrics" in summary  # the 50-item history stays in XCom
    assert len(summary) <= 9


def test_unselected_stage_is_skipped_without_starting_a_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    def no_process(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a process was started for an unselected stage")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    op, _ = _operator("gather")
    with pytest.raises(AirflowSkipException, match="not in this run's stages"):
        op.execute({"params": {"stages": ["ingest", "evaluate"]}})


@pytest.mark.parametrize(
    ("code", "retried"),
    [(2, False), (1, True), (-9, True), (3, True)],
)
def test_exit_code_decides_whether_a_failure_is_retried(
    code: int, retried: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    if code < 0:  # killed by a signal (the OOM killer)
        monkeypatch.setenv("FAKE_STAGE_SLEEP", "30")
        command = ["bash", "-c", 'kill -9 $$; echo "$@"', "fake"]
    else:
        monkeypatch.setenv("FAKE_STAGE_EXIT", str(code))
        command = FAKE_COMMAND
    op, _ = _operator()
    op.command = command
    with pytest.raises(AirflowException) as info:
        op.execute({"params": {"stages": ["ingest"]}})
    assert isinstance(info.value, AirflowFailException) is not retried
    if code == 2:
        assert "user error (exit 2), not retried" in str(info.value)
        assert "unknown profile 'nope'" in str(info.value)  # the stage's own error line
    elif code == 1:
        assert "the model server died" in str(info.value)


def test_skip_exit_code_still_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from chimera_core.errors import SKIP_EXIT_CODE

    monkeypatch.setenv("FAKE_STAGE_EXIT", str(SKIP_EXIT_CODE))
    op, _ = _operator()
    with pytest.raises(AirflowSkipException):
        op.execute({"params": {}})  # no stages param: the CLI's --only decides


def test_on_kill_stops_the_stage_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setenv("FAKE_STAGE_LINES", "1")
    monkeypatch.setenv("FAKE_STAGE_SLEEP", "60")
    op, log = _operator()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({"params": {}})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while "ingest: step 1" not in log.lines and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    op.on_kill()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert time.monotonic() - started < 10
    assert errors and "signal 15" in str(errors[0])


def test_stages_param_is_a_multi_select_of_the_stage_names() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamValidationError

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    for dag_id, stages in [
        ("chimera_training", STAGES),
        ("chimera_evaluate", ["ingest", "evaluate"]),
    ]:
        param = bag.dags[dag_id].params.get_param("stages")
        schema = param.schema
        # Airflow 3's trigger form: an array with `examples` is a multi-select of those values
        assert schema["type"] == "array"
        assert schema["examples"] == stages
        assert schema["items"] == {"type": "string", "enum": stages}
        assert set(schema["values_display"]) == set(stages)
        # each chip names its stage first (a stage without a label would show its bare name)
        for stage, label in schema["values_display"].items():
            assert label.startswith(f"{stage} ("), (stage, label)
        assert param.value == stages
        param.resolve(["evaluate"])
        for bad in (["nope"], [], ["ingest", "ingest"], "ingest"):
            with pytest.raises(ParamValidationError):
                param.resolve(bad)


DAG_FILE = """
import datetime
import json
import sys

import pendulum
from airflow.sdk import DAG, Param
from chimera_airflow import stage_pipeline, stages_param

from chimera_core.config import load_config

STAGES = {stages!r}
config = load_config("local")
orch = config.orchestration.model_copy(
    update={{"chimera_command": {command!r}, "retries": {retries}, "minio_conn_id": "none"}}
)
config = config.model_copy(update={{"orchestration": orch}})

with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={{"profile": Param("local", type="string"), "stages": stages_param(STAGES)}},
) as dag:
    stage_pipeline(STAGES, config, retry_delay=datetime.timedelta(0))
"""


def _run_dag(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stages: list[str],
    conf: dict[str, Any],
    retries: int = 0,
) -> dict[str, Any]:
    """A DAG of select_stages and fake stage tasks, run with dag.test(); task states and tries.

    dag.test() runs DAGs of a bundle: the DAG is a file in a folder of its own.
    """
    from airflow.dag_processing.dagbag import DagBag

    dag_id = f"chimera_fake_{'_'.join(stages)}_r{retries}"
    folder = tmp_path / f"dags_{dag_id}"
    folder.mkdir()
    (folder / "fake_dag.py").write_text(
        DAG_FILE.format(stages=stages, command=FAKE_COMMAND, retries=retries, dag_id=dag_id)
    )
    bundle = {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(folder)}}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    dagrun = bag.dags[dag_id].test(run_conf=conf)
    return {
        "state": str(dagrun.state),
        "tasks": {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()},
        "tries": {ti.task_id: ti.try_number for ti in dagrun.get_task_instances()},
    }


def test_select_stages_skips_unselected_stages_before_they_start(
    airflow_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAKE_STAGE_DIR", str(tmp_path))
    run = _run_dag(tmp_path, monkeypatch, STAGES, {"stages": ["gather", "evaluate"]})
    assert run["state"] == "success", run
    assert run["tasks"] == {
        "select_stages": "success",
        **{s: "skipped" for s in STAGES},
        "gather": "success",
        "evaluate": "success",  # after skipped sft, ppo, bandit, board: none_failed runs it
        "done": "success",
    }
    assert (tmp_path / "started").read_text().split() == ["gather", "evaluate"]


def test_user_error_fails_at_once_and_a_fault_is_retried(
    airflow_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAKE_STAGE_EXIT_INGEST", "2")
    monkeypatch.setenv("FAKE_STAGE_EXIT_GATHER", "1")
    user_error = _run_dag(tmp_path, monkeypatch, ["ingest", "gather"], {"stages": ["ingest"]}, 2)
    # the run failed although every task after ingest was left out (skipped): `done` says so
    assert user_error["state"] == "failed"
    assert user_error["tasks"] == {
        "select_stages": "success",
        "ingest": "failed",
        "gather": "skipped",
        "done": "upstream_failed",
    }
    assert user_error["tries"]["ingest"] == 1

    fault = _run_dag(
        tmp_path, monkeypatch, ["gather", "evaluate"], {"stages": ["gather", "evaluate"]}, 2
    )
    assert fault["state"] == "failed"
    assert fault["tasks"]["gather"] == "failed"
    assert fault["tries"]["gather"] == 3  # the first try and two retries
    assert fault["tasks"]["evaluate"] == "upstream_failed"
