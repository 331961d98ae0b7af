"""Model registry: versions with lineage, champion pointer, verified fetch."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.errors import ChimeraError
from chimera_core.model_registry import BASE, ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalArtifactStore(tmp_path / "store"), tmp_path / "cache")


def _checkpoint(tmp_path: Path, content: str) -> Path:
    """A checkpoint whose (finite, tiny) weights carry ``content`` in their metadata."""
    import numpy as np
    from safetensors.numpy import save_file

    ckpt = tmp_path / f"ckpt-{content}"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "llama"}')
    weights = {"w": np.zeros((2, 2), np.float32)}
    save_file(weights, str(ckpt / "model.safetensors"), metadata={"content": content})
    return ckpt


def _content(ckpt: Path) -> str:
    """The ``content`` a ``_checkpoint`` was made with."""
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), framework="np") as handle:
        return str(handle.metadata()["content"])


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
    assert _content(local) == "w1"
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


def test_only_adapter_versions_can_be_fetched_as_adapters(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.json").write_text("{}")
    registry.register("supervisor_policy", policy, parent=BASE, stage="bandit", run_id="r1")
    with pytest.raises(
        ChimeraError, match="'bandit-r1' of model 'supervisor_policy' is not a LoRA"
    ):
        registry.fetch_adapter("supervisor_policy", "bandit-r1")
    with pytest.raises(ChimeraError, match="is the base model, not an adapter"):
        registry.fetch_adapter("junior", BASE)
    with pytest.raises(ChimeraError, match="unknown version 'x' of model 'junior'"):
        registry.fetch_adapter("junior", "x")


def test_registry_cli_exports_an_adapter_merged_into_its_base(
    tmp_path: Path,
    tiny_llama_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chimera_core.artifacts import open_store
    from chimera_core.cli.main import main
    from chimera_core.config import load_config
    from chimera_core.serving.manifest import structure_problems
    from tests.tiny_llama import profile_aliases, random_adapter

    monkeypatch.setenv("CHIMERA_ARTIFACTS__LOCAL_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CHIMERA_SERVING__MODELS_DIR", str(tmp_path / "models"))
    # Every served alias shares one base: make the tiny model that base for all of them.
    for alias in profile_aliases("local"):
        monkeypatch.setenv(f"CHIMERA_MODELS__{alias.upper()}__CHECKPOINT", str(tiny_llama_dir))
    config = load_config("local")
    registry = ModelRegistry(open_store(config.artifacts), tmp_path / "cache")
    adapter = random_adapter(tiny_llama_dir, tmp_path / "adapter")
    registry.register("junior", adapter, parent=BASE, stage="sft", run_id="r1")
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.json").write_text("{}")
    registry.register("supervisor_policy", policy, parent=BASE, stage="bandit", run_id="r1")

    dest = tmp_path / "export"
    assert main(["registry", "export", "junior", "sft-r1", "--merged", str(dest)]) == 0
    assert structure_problems(dest) == []
    assert not (dest / "adapter_config.json").exists()

    refusals = {
        ("junior", "sft-r9", "new1"): "unknown version 'sft-r9' of model 'junior'",
        ("ghost", "sft-r1", "new2"): "unknown version 'sft-r1' of model 'ghost'",
        ("junior", BASE, "new3"): "is the base model, not an adapter",
        ("supervisor_policy", "bandit-r1", "new4"): "is not a LoRA adapter",
        ("junior", "sft-r1", "export"): "exists and is not an empty directory",
    }
    capsys.readouterr()
    for (alias, version, out), message in refusals.items():
        argv = ["registry", "export", alias, version, "--merged", str(tmp_path / out)]
        assert main(argv) == 2, argv
        assert message in " ".join(capsys.readouterr().err.split()), argv
        assert out == "export" or not (tmp_path / out).exists()


def test_registry_cli_promote_refuses_unknown_alias_and_unregistered_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chimera_core.cli.main import main

    root = tmp_path / "artifacts"
    monkeypatch.setenv("CHIMERA_ARTIFACTS__LOCAL_ROOT", str(root))
    monkeypatch.setenv("CHIMERA_SERVING__MODELS_DIR", str(tmp_path / "models"))
    refusals = {
        ("promote", "no-such-alias", BASE): "unknown model alias 'no-such-alias'",
        ("promote", "junior", "sft-nope"): "unknown version 'sft-nope' of model 'junior'",
        ("rollback", "no-such-alias"): "unknown model alias 'no-such-alias'",
    }
    for args, message in refusals.items():
        assert main(["registry", *args]) == 2, args
        err = " ".join(capsys.readouterr().err.split())
        assert message in err and "Traceback" not in err, args
    assert "supervisor_policy" in err and "junior" in err  # the known aliases are listed
    assert not root.exists() or not list(root.rglob("champion.json"))  # nothing was written
    # The profile's aliases and the bandit policy's can be promoted to base.
    assert main(["registry", "promote", "junior", BASE]) == 0
    assert main(["registry", "promote", "supervisor_policy", BASE]) == 0
