"""``stages.evaluate.model_set`` is checked before any stage runs: a bad one moves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.cli.main import main
from chimera_core.config import load_config
from chimera_core.errors import ChimeraError
from chimera_core.model_registry import BASE, ModelRegistry
from chimera_core.pipeline import check_model_set


@pytest.fixture
def store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pubmedqa_file: Path
) -> LocalArtifactStore:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHIMERA_ARTIFACTS__LOCAL_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CHIMERA_SERVING__MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("CHIMERA_PUBMEDQA_FILE", str(pubmedqa_file))
    return LocalArtifactStore(tmp_path / "artifacts")


def test_evaluate_refuses_an_unknown_model_set_before_ingest_moves_current(
    store: LocalArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stratified dataset is current; evaluate's own ingest (seed) would replace it.
    assert main(["ingest", "--split", "stratified"]) == 0
    current = store.get_bytes("datasets/pubmedqa/CURRENT.json")
    keys = list(store.list())
    capsys.readouterr()
    for argv in (
        ["evaluate", "--model-set", "bogus"],
        ["evaluate", "--model-set", "run:r1"],
        ["pipeline", "run", "--stages", "ingest,evaluate"],  # the profile's set, from the env
    ):
        if argv[0] == "pipeline":
            with pytest.MonkeyPatch.context() as env:
                env.setenv("CHIMERA_STAGES__EVALUATE__MODEL_SET", "bogus")
                assert main(argv) == 2, argv
        else:
            assert main(argv) == 2, argv
        err = " ".join(capsys.readouterr().err.split())
        assert "stages.evaluate.model_set (--model-set): unknown model set" in err, err
        assert "expected candidate, champion, base or a registered version id" in err
        assert "Traceback" not in err and "stage 'evaluate' failed" not in err
        assert store.get_bytes("datasets/pubmedqa/CURRENT.json") == current, argv
        assert list(store.list()) == keys, argv  # no run started, nothing written


def test_a_model_set_is_a_named_set_a_registered_version_or_one_this_run_trains(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    ModelRegistry(store, tmp_path / "cache").register(
        "junior", adapter, parent=BASE, stage="sft", run_id="old"
    )
    registry = ModelRegistry(store, tmp_path / "cache")
    for name in ("candidate", "champion", "base", "sft-old"):
        config = load_config(overrides={"stages.evaluate.model_set": name})
        check_model_set(config, registry, "r2", ["ingest", "evaluate"])
    config = load_config(overrides={"stages.evaluate.model_set": "sft-r2"})
    check_model_set(config, registry, "r2", ["ingest", "sft", "evaluate"])  # sft registers it
    with pytest.raises(ChimeraError, match=r"'sft-r2'.*latest registered: sft-old"):
        check_model_set(config, registry, "r2", ["ingest", "evaluate"])
