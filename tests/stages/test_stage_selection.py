"""A run may hold any subset of the stages: ``--stages gather,ppo``, ``evaluate`` alone.

Without an ingest stage in the run, every stage works on the current dataset; with no dataset
at all a stage fails at once with what to run, before any rollout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.cli.main import main
from chimera_core.config import load_config
from chimera_core.errors import ChimeraError
from chimera_core.plugins import get_registry
from chimera_core.stages import evaluate, gather
from chimera_core.stages.base import StageContext
from tests.lab.fake_openai import fake_openai_server
from tests.tiny_llama import profile_aliases

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stage", [gather, evaluate])
def test_a_stage_without_any_dataset_fails_before_any_rollout(
    tmp_path: Path, stage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rollouts(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no rollout may start without a dataset")

    monkeypatch.setattr(gather, "served_rollouts", no_rollouts)
    monkeypatch.setattr(evaluate, "served_rollouts", no_rollouts)
    config = load_config("local", environ={})
    store = LocalArtifactStore(tmp_path / "store")
    name = stage.__name__.rsplit(".", 1)[-1]
    ctx = StageContext(config, "r1", name, store, get_registry())
    with pytest.raises(ChimeraError, match="no dataset was ingested yet: run `chimera ingest`"):
        stage.run(ctx)


def _profile(tmp_path: Path, url: str, data_file: Path, base_dir: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    for alias in profile_aliases():
        # Served by a scripted OpenAI server; trained from a tiny random Llama (seconds).
        data["models"][alias].update(
            backend="openai", base_url=url, max_retries=0, timeout_s=20, checkpoint=str(base_dir)
        )
    data["data"] = {"source": "file", "file": str(data_file)}
    data["artifacts"] = {"backend": "local", "local_root": str(tmp_path / "artifacts")}
    data["serving"]["models_dir"] = str(tmp_path / "models")
    data["tracking"] = {"wandb_mode": "disabled", "wandb_dir": str(tmp_path / "wandb")}
    data["stages"]["gather"].update(n_tasks=2, n_runners=1, max_attempts=1)
    data["stages"]["evaluate"].update(n_tasks=2)
    data["stages"]["ppo"]["options"]["grpo"].update(total_steps=1, max_response_length=8)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _result(tmp_path: Path, run_id: str, stage: str) -> dict[str, Any]:
    path = tmp_path / "artifacts" / "runs" / run_id / stage / "result.json"
    result: dict[str, Any] = json.loads(path.read_text())
    return result


@pytest.mark.slow
def test_gather_then_ppo_and_evaluate_alone_run_on_the_current_dataset(
    tmp_path: Path, pubmedqa_file: Path, tiny_llama_dir: Path
) -> None:
    with fake_openai_server() as fake:
        profile = str(_profile(tmp_path, fake.url, pubmedqa_file, tiny_llama_dir))
        assert main(["ingest", "--profile", profile]) == 0  # the current dataset, no run

        run = ["pipeline", "run", "--profile", profile, "--run-id", "gp", "--stages"]
        assert main([*run, "gather,ppo"]) == 0
        assert _result(tmp_path, "gp", "gather")["metrics"]["n_succeeded"] == 2
        ppo = _result(tmp_path, "gp", "ppo")
        assert ppo["metrics"]["algorithm"] == "grpo"
        # A tiny random model's 8-token samples never parse: every reward and advantage is 0,
        # the adapter is its start, and nothing is registered as if it were trained.
        assert ppo["metrics"]["skipped"].startswith("no learning signal"), ppo["metrics"]
        assert "version" not in ppo["outputs"]

        assert (
            main(
                ["pipeline", "run", "--profile", profile, "--run-id", "ev", "--stages", "evaluate"]
            )
            == 0
        )
        evaluated = _result(tmp_path, "ev", "evaluate")
        assert "challenger" not in evaluated["metrics"]["sets"]  # nothing trained in this run
