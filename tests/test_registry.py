"""Model registry: versions with lineage, champion pointer, verified fetch."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.errors import ChimeraError
from chimera_core.registry import BASE, ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalArtifactStore(tmp_path / "store"), tmp_path / "cache")


def _checkpoint(tmp_path: Path, content: str) -> Path:
    ckpt = tmp_path / f"ckpt-{content}"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "llama"}')
    (ckpt / "model.safetensors").write_text(content)
    return ckpt


def test_register_fetch_promote(registry: ModelRegistry, tmp_path: Path) -> None:
    assert registry.champion("junior") == BASE
    assert registry.model_set("champion", ["junior", "senior"]) == {"junior": BASE, "senior": BASE}
    v = registry.register(
        "junior",
        _checkpoint(tmp_path, "w1"),
        parent=BASE,
        stage="sft",
        run_id="r1",
        data_sha256="abc",
        metrics={"loss": 1.0},
    )
    assert v.version == "sft-r1" and v.parent == BASE and v.uri.startswith("file://")
    # Idempotent for a run id: registering again returns the same record.
    again = registry.register(
        "junior", _checkpoint(tmp_path, "w2"), parent=BASE, stage="sft", run_id="r1"
    )
    assert again == v
    assert registry.versions("junior") == ["sft-r1"]
    local = registry.fetch("junior", "sft-r1")
    assert (local / "model.safetensors").read_text() == "w1"
    registry.promote("junior", "sft-r1", reason="beat base")
    assert registry.champion("junior") == "sft-r1"
    assert registry.model_set("champion", ["junior", "senior"]) == {
        "junior": "sft-r1",
        "senior": BASE,
    }
    assert registry.model_set("base", ["junior"]) == {"junior": BASE}
    assert registry.aliases() == ["junior"]


def test_unknown_version_lists_known(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("senior", _checkpoint(tmp_path, "w"), parent=BASE, stage="ppo", run_id="r9")
    with pytest.raises(
        ChimeraError, match=r"unknown version 'x' of model 'senior' \(known: ppo-r9\)"
    ):
        registry.get("senior", "x")
    with pytest.raises(ChimeraError, match="unknown model set"):
        registry.model_set("best", ["senior"])


def test_promote_and_roll_back_walk_the_champion_history(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(ChimeraError, match="no earlier champion to roll back to"):
        registry.rollback("senior")
    for run in ("r1", "r2"):
        registry.register(
            "senior", _checkpoint(tmp_path, run), parent=BASE, stage="ppo", run_id=run
        )
    registry.promote("senior", "ppo-r1", reason="beat base")
    registry.promote("senior", "ppo-r2", reason="beat ppo-r1")
    record = registry.champion_record("senior")
    assert record["previous"] == "ppo-r1"
    assert [h["version"] for h in record["history"]] == [BASE, "ppo-r1"]

    assert registry.rollback("senior", reason="bad in production") == "ppo-r1"
    assert registry.champion("senior") == "ppo-r1"
    assert "rollback from ppo-r2: bad in production" in registry.champion_record("senior")["reason"]
    assert registry.rollback("senior") == BASE
    assert registry.model_set("champion", ["senior"]) == {"senior": BASE}
    with pytest.raises(ChimeraError, match="no earlier champion"):
        registry.rollback("senior")
    assert registry.versions("senior") == ["ppo-r1", "ppo-r2"]  # rollback deletes nothing


def test_registry_cli_lists_promotes_and_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chimera_core.artifacts import open_store
    from chimera_core.cli.main import main
    from chimera_core.config import load_config

    monkeypatch.setenv("CHIMERA_ARTIFACTS__LOCAL_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CHIMERA_SERVING__MODELS_DIR", str(tmp_path / "models"))
    config = load_config("local")
    registry = ModelRegistry(open_store(config.artifacts), tmp_path / "cache")
    registry.register("junior", _checkpoint(tmp_path, "w"), parent=BASE, stage="sft", run_id="r1")

    assert main(["registry", "promote", "junior", "sft-r1", "--reason", "test"]) == 0
    assert registry.champion("junior") == "sft-r1"
    assert main(["registry", "list"]) == 0
    assert "sft-r1" in capsys.readouterr().out
    assert main(["registry", "rollback", "junior"]) == 0
    assert registry.champion("junior") == BASE
    assert main(["registry", "rollback", "junior"]) == 2
    assert "no earlier champion" in capsys.readouterr().err


def test_a_runs_model_set_is_what_it_trained_over_the_champions(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register("junior", _checkpoint(tmp_path, "a"), parent=BASE, stage="sft", run_id="r1")
    registry.register("junior", _checkpoint(tmp_path, "b"), parent=BASE, stage="sft", run_id="r2")
    registry.register("senior", _checkpoint(tmp_path, "c"), parent=BASE, stage="ppo", run_id="r2")
    registry.promote("junior", "sft-r1", reason="t")
    aliases = ["junior", "senior", "board"]
    assert registry.model_set("run:r2", aliases) == {
        "junior": "sft-r2",
        "senior": "ppo-r2",
        "board": BASE,
    }
    assert registry.model_set("run:r1", aliases)["senior"] == BASE
    with pytest.raises(ChimeraError, match="run 'r3' registered no model versions"):
        registry.model_set("run:r3", aliases)
