"""Two `chimera stage gather` on one run id at once: the second refuses (exit 2) or waits.

The first holder is a real second process; the stage is a stand-in that appends one metrics
row per run and waits for a go file, so an overlap would show as two rows.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chimera_core.cli.main import main
from chimera_core.stages import STAGES
from chimera_core.stages.base import StageContext, StageResult

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path(".chimera/artifacts/runs/r1/gather/lock.json")
RESULT = Path(".chimera/artifacts/runs/r1/gather/result.json")

HOLDER = """
import sys, time
from pathlib import Path
from chimera_core.cli.main import main
from chimera_core.stages import STAGES
from chimera_core.stages.base import StageResult

def slow_gather(ctx):
    Path("started").write_text("1")
    while not Path("go").exists():
        time.sleep(0.05)
    with Path("metrics.jsonl").open("a") as fh:
        fh.write('{"step": 1, "writer": "holder"}\\n')
    return StageResult(stage=ctx.stage, run_id=ctx.run_id, metrics={"writer": "holder"})

STAGES["gather"] = slow_gather
sys.exit(main(["stage", "gather", "--run-id", "r1"]))
"""


def _fake_gather(ctx: StageContext) -> StageResult:
    with Path("metrics.jsonl").open("a") as fh:
        fh.write('{"step": 1, "writer": "second"}\n')
    return StageResult(stage=ctx.stage, run_id=ctx.run_id, metrics={"writer": "second"})


def _start_holder(tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert proc.poll() is None, "the holder process died before its stage started"
        assert time.monotonic() < deadline, "the holder's stage never started"
        time.sleep(0.05)
    return proc


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the local profile keeps artifacts under .chimera/
    monkeypatch.setitem(STAGES, "gather", _fake_gather)
    return tmp_path


def test_a_second_gather_on_a_running_run_exits_2_naming_the_holder(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = _start_holder(here)
    try:
        lock = json.loads(LOCK.read_text())
        assert lock["pid"] == proc.pid
        assert main(["stage", "gather", "--run-id", "r1"]) == 2
        err = " ".join(capsys.readouterr().err.split())  # rich may wrap long lines
        assert "run 'r1' stage 'gather' is locked by" in err
        assert f"pid {proc.pid} on host {socket.gethostname()} since {lock['since']}" in err
        assert "--wait" in err and "Traceback" not in err
        assert json.loads(LOCK.read_text()) == lock  # the holder's lock is untouched
        assert not RESULT.exists() and not Path("metrics.jsonl").exists()  # nothing ran
    finally:
        Path("go").write_text("1")
        assert proc.wait(timeout=60) == 0
    assert json.loads(RESULT.read_text())["metrics"] == {"writer": "holder"}
    assert Path("metrics.jsonl").read_text().splitlines() == ['{"step": 1, "writer": "holder"}']
    assert not LOCK.exists()  # released


def test_with_wait_the_second_gather_waits_and_reuses_the_result(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = _start_holder(here)
    codes: list[int] = []
    waiter = threading.Thread(
        target=lambda: codes.append(main(["stage", "gather", "--run-id", "r1", "--wait"]))
    )
    try:
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive() and not codes  # still waiting for the holder
    finally:
        Path("go").write_text("1")
        assert proc.wait(timeout=60) == 0
        waiter.join(timeout=60)
    assert codes == [0]
    assert "stage gather (r1): reused" in capsys.readouterr().out
    assert json.loads(RESULT.read_text())["metrics"] == {"writer": "holder"}
    assert Path("metrics.jsonl").read_text().splitlines() == ['{"step": 1, "writer": "holder"}']
    assert not LOCK.exists()


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    LOCK.parent.mkdir(parents=True)
    stale = {"pid": dead.pid, "host": socket.gethostname(), "since": "2020-01-01", "token": "x"}
    LOCK.write_text(json.dumps(stale))
    assert main(["stage", "gather", "--run-id", "r1"]) == 0
    assert json.loads(RESULT.read_text())["metrics"] == {"writer": "second"}
    assert Path("metrics.jsonl").read_text().splitlines() == ['{"step": 1, "writer": "second"}']
    assert not LOCK.exists()


def test_a_lock_held_on_another_host_is_not_taken_over(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    LOCK.parent.mkdir(parents=True)
    remote = {"pid": 4242, "host": "gpu-node-7", "since": "2020-01-01T00:00:00+00:00", "token": "y"}
    LOCK.write_text(json.dumps(remote))
    assert main(["stage", "gather", "--run-id", "r1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "pid 4242 on host gpu-node-7 since 2020-01-01T00:00:00+00:00" in err
    assert json.loads(LOCK.read_text()) == remote
    assert not RESULT.exists() and not Path("metrics.jsonl").exists()


def test_a_finished_stage_is_reused_without_taking_the_lock(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stage", "gather", "--run-id", "r1"]) == 0
    LOCK.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "s", "token": "z"}))
    assert main(["stage", "gather", "--run-id", "r1"]) == 0  # reading a result needs no lock
    assert "reused" in capsys.readouterr().out
    assert len(Path("metrics.jsonl").read_text().splitlines()) == 1
