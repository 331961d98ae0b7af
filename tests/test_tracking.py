"""Tracking writes JSONL always and real W&B offline run files when enabled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chimera_core.config.models import TrackingConfig
from chimera_core.tracking import Tracker


def test_jsonl_and_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = TrackingConfig(wandb_mode="offline", wandb_dir=tmp_path / "wandb")
    jsonl = tmp_path / "metrics.jsonl"
    with Tracker(config, run_id="r1", stage="gather", jsonl_path=jsonl) as tracker:
        for step in range(3):
            tracker.log({"reward": step / 10, "role": "Geneticist"}, step=step)
        tracker.summary({"mean_reward": 0.1})
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["reward"] for r in rows] == [0.0, 0.1, 0.2]
    run_files = list((tmp_path / "wandb").rglob("*.wandb"))
    assert run_files, "W&B offline run file missing"


def test_disabled_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = TrackingConfig(wandb_mode="offline", wandb_dir=tmp_path / "wandb")
    tracker = Tracker(config, run_id="r1", stage="sft", jsonl_path=tmp_path / "m.jsonl")
    tracker.log({"loss": 1.0}, step=0)
    tracker.close()
    assert not (tmp_path / "wandb").exists()
    assert (tmp_path / "m.jsonl").is_file()


def test_offline_tracker_prints_no_weave_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import openai  # noqa: F401  (what makes W&B suggest Weave)

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DISABLE_WEAVE", "unset")  # recorded, so the test's change is undone
    monkeypatch.delenv("WANDB_DISABLE_WEAVE")
    config = TrackingConfig(wandb_mode="offline", wandb_dir=tmp_path / "wandb")
    with Tracker(config, run_id="r1", stage="gather") as tracker:
        tracker.log({"reward": 0.5}, step=0)
    out, err = capfd.readouterr()
    assert "Weave" not in out + err
