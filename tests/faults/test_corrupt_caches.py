"""Damaged local copies and bad weights: never loaded, served, trained on or published.

The registry's cache is checked against the store's manifest on every fetch (a damaged copy is
fetched again; a damaged store copy exits 2 naming alias, version, file and the way out); a
safetensors file with NaN/Inf or an unreadable one is refused, naming the file and the tensor,
wherever a model directory enters (register, prepare, merge, serve).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.artifacts.base import sha256_file
from chimera_core.config.models import ChimeraConfig, ModelEndpointConfig, ServingConfig
from chimera_core.errors import ModelFileError
from chimera_core.model_registry import BASE, ModelRegistry
from chimera_core.serving import verified
from chimera_core.serving.model_store import prepare_model, resolve_checkpoint
from chimera_core.training import weights
from chimera_core.training.bandit import META_FILE, WEIGHTS_FILE, LinearBanditPolicy

POLICY = "supervisor_policy"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """Warnings of the registry's logger (the CLI stops chimera's logs reaching caplog)."""
    handler = _Collect()
    logger = logging.getLogger("chimera.registry")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalArtifactStore(tmp_path / "store"), tmp_path / "cache")


def _policy(tmp_path: Path) -> Path:
    """A fitted bandit policy directory (its json settings and safetensors weights)."""
    from chimera_core.plugins import BanditSample

    policy = LinearBanditPolicy(n_features=16, epsilon=0.1)
    sample = BanditSample(
        task_id="t", goal="g", hypotheses=["a", "b"], chosen=0, propensity=1.0, reward=1.0
    )
    policy.update([sample])
    return policy.save(tmp_path / "policy")


def _adapter(path: Path, value: float = 0.5) -> Path:
    """A small adapter directory; ``value`` fills one tensor (NaN or Inf to poison it)."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    weights = {"base_model.layers.0.q_proj.lora_A.weight": np.full((4, 8), 0.25, np.float32)}
    weights["base_model.layers.0.q_proj.lora_B.weight"] = np.full((8, 4), value, np.float32)
    save_file(weights, str(path / "adapter_model.safetensors"))
    return path


def _poison(file: Path, tensor: str, value: float = float("nan")) -> None:
    """Set one element of a tensor in a saved safetensors file (keeping its metadata)."""
    from safetensors.torch import load_file
    from safetensors.torch import save_file as save_torch

    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(file))
    tensors[tensor].view(-1)[-1] = value
    save_torch(tensors, str(file), metadata=metadata)


def _flip(file: Path) -> None:
    """Overwrite bytes in the middle of a file, size unchanged: only a checksum can tell."""
    with file.open("r+b") as fh:
        fh.seek(file.stat().st_size // 2)
        fh.write(b"\xff\xff\xff\xff")


def _store_keys(registry: ModelRegistry) -> list[str]:
    return list(registry.store.list("models"))


# ---------------------------------------------------------------- the registry's cache


def _rewrite_policy(copy: Path) -> str:
    """Rewrite the cached policy's settings and make its local manifest agree."""
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps({**meta, "epsilon": 1.0}))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][META_FILE] = {
        "sha256": sha256_file(copy / META_FILE),
        "size": (copy / META_FILE).stat().st_size,
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))  # a tampered local manifest
    return META_FILE


def _corrupt_weights(copy: Path) -> str:
    _flip(copy / WEIGHTS_FILE)
    return WEIGHTS_FILE


def _truncate_weights(copy: Path) -> str:
    (copy / WEIGHTS_FILE).write_bytes((copy / WEIGHTS_FILE).read_bytes()[:20])
    return WEIGHTS_FILE


def _delete_settings(copy: Path) -> str:
    (copy / META_FILE).unlink()
    return META_FILE


def _add_file(copy: Path) -> str:
    (copy / "extra.safetensors").write_bytes(b"planted")
    return "extra.safetensors"


@pytest.mark.parametrize(
    "damage", [_rewrite_policy, _corrupt_weights, _truncate_weights, _delete_settings, _add_file]
)
def test_a_damaged_cached_policy_is_fetched_again_with_a_warning_naming_the_file(
    registry: ModelRegistry,
    tmp_path: Path,
    warnings_logged: list[str],
    damage: Callable[[Path], str],
) -> None:
    source = _policy(tmp_path)
    registry.register(POLICY, source, parent=BASE, stage="bandit", run_id="r1")
    copy = registry.fetch(POLICY, "bandit-r1")
    assert warnings_logged == []  # a fresh copy: nothing to say
    name = damage(copy)

    again = registry.fetch(POLICY, "bandit-r1")

    assert again == copy
    for original in (META_FILE, WEIGHTS_FILE):
        assert (copy / original).read_bytes() == (source / original).read_bytes()
    assert not (copy / "extra.safetensors").exists()
    assert LinearBanditPolicy.load(copy).epsilon == 0.1  # what was trained, not the rewrite
    [warning] = warnings_logged
    assert str(copy / name) in warning and "fetching it again" in warning
    assert registry.fetch(POLICY, "bandit-r1") == copy and len(warnings_logged) == 1


def test_a_damaged_store_copy_exits_2_naming_alias_version_file_and_the_way_out(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chimera_core.cli.main import main

    monkeypatch.setenv("CHIMERA_ARTIFACTS__LOCAL_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CHIMERA_SERVING__MODELS_DIR", str(tmp_path / "models"))
    store = LocalArtifactStore(tmp_path / "artifacts")
    registry = ModelRegistry(store, tmp_path / "models" / "registry")  # the CLI's cache
    registry.register("junior", _adapter(tmp_path / "a"), parent=BASE, stage="sft", run_id="r1")
    cached = registry.fetch("junior", "sft-r1")
    _flip(cached / "adapter_model.safetensors")  # the cache and ...
    _flip(tmp_path / "artifacts/models/junior/versions/sft-r1/adapter_model.safetensors")

    with pytest.raises(ModelFileError) as caught:
        registry.fetch("junior", "sft-r1")
    message = str(caught.value)
    assert caught.value.exit_code == 2
    for part in ("'junior'", "'sft-r1'", "adapter_model.safetensors", "damaged in the artifact"):
        assert part in message
    assert "chimera registry rollback junior" in message
    # Neither the damaged copy nor a half-fetched one is left for anything to load.
    assert not cached.exists() and not list(cached.parent.glob(".*partial*"))

    merged = tmp_path / "merged"
    assert main(["registry", "export", "junior", "sft-r1", "--merged", str(merged)]) == 2
    err = capsys.readouterr().err
    assert "adapter_model.safetensors: sha256 differs" in err and "registry rollback" in err
    assert "Traceback" not in err and not merged.exists()


def test_a_version_stored_with_nan_weights_is_refused_at_fetch(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    # Registered before weights were checked: published straight through the store.
    bad = _adapter(tmp_path / "a", value=float("nan"))
    record = {"alias": "junior", "version": "sft-old", "parent": BASE, "stage": "sft"}
    registry.store.put_dir(
        "models/junior/versions/sft-old", bad, metadata={**record, "run_id": "old"}
    )
    with pytest.raises(ModelFileError, match=r"lora_B\.weight' \(F32\) has NaN") as caught:
        registry.fetch_adapter("junior", "sft-old")
    assert "sft-old" in str(caught.value) and "adapter_model.safetensors" in str(caught.value)
    assert not (registry.cache_dir / "junior" / "sft-old").exists()


# ---------------------------------------------------------------- registering bad weights


@pytest.mark.parametrize(
    ("value", "what"), [(float("nan"), "NaN"), (float("inf"), "Inf"), (-float("inf"), "Inf")]
)
def test_non_finite_weights_are_never_registered(
    registry: ModelRegistry, tmp_path: Path, value: float, what: str
) -> None:
    bad = _adapter(tmp_path / "a", value=value)
    with pytest.raises(ModelFileError) as caught:
        registry.register("junior", bad, parent=BASE, stage="sft", run_id="r1")
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert f"{bad / 'adapter_model.safetensors'}: tensor " in message
    assert f"'base_model.layers.0.q_proj.lora_B.weight' (F32) has {what} values" in message
    assert "Nothing was registered" in message
    assert registry.versions("junior") == [] and _store_keys(registry) == []


def test_an_unreadable_safetensors_is_never_registered(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    bad = _adapter(tmp_path / "a")
    (bad / "adapter_model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelFileError, match="not a readable safetensors file") as caught:
        registry.register("junior", bad, parent=BASE, stage="sft", run_id="r1")
    assert str(bad / "adapter_model.safetensors") in str(caught.value)
    assert _store_keys(registry) == []


def test_a_trainer_that_produces_nan_weights_registers_nothing(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    from chimera_core.plugins import TrainRequest, TrainResult
    from chimera_core.stages import sft
    from tests.stages.test_training_stage import RecordingAlgorithm, _ctx

    class DivergingAlgorithm(RecordingAlgorithm):
        """Saves an adapter whose training blew up: a NaN in one LoRA matrix."""

        def train(self, request: TrainRequest) -> TrainResult:
            result = super().train(request)
            weights = request.output_dir / "adapter_model.safetensors"
            with safe_open(str(weights), framework="pt") as handle:
                names = handle.keys()  # a safe_open handle is not iterable itself
            self.poisoned = next(k for k in names if "lora_B" in k)
            _poison(weights, self.poisoned)
            return result

    algorithm = DivergingAlgorithm()
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", algorithm)
    with pytest.raises(ModelFileError) as caught:
        sft.run(ctx)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert message.startswith("algorithm 'recording' trained junior: refusing to register")
    assert f"adapter_model.safetensors: tensor '{algorithm.poisoned}' (F32) has NaN" in message
    assert ctx.models.versions("junior") == [] and not list(ctx.store.list("models"))


# ---------------------------------------------------------------- prepared and plain HF dirs


def _config(models_dir: Path) -> ChimeraConfig:
    return ChimeraConfig(
        models={"a": ModelEndpointConfig(served_model="a", checkpoint="base")},
        roles={},
        serving=ServingConfig(models_dir=models_dir),
    )


@pytest.fixture
def nan_llama(tiny_llama_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model with a NaN in its embeddings."""
    copy = Path(shutil.copytree(tiny_llama_dir, tmp_path / "nan-llama"))
    _poison(copy / "model.safetensors", "model.embed_tokens.weight")
    return copy


def test_preparing_an_hf_dir_with_nan_weights_exits_2_and_prepares_nothing(
    nan_llama: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chimera_core.cli.main import main

    models_dir = tmp_path / "models"
    monkeypatch.setenv("CHIMERA_SERVING__MODELS_DIR", str(models_dir))
    argv = ["model", "prepare", "--source", str(nan_llama), "--name", "nan"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{nan_llama / 'model.safetensors'}: tensor 'model.embed_tokens.weight'" in err
    assert "has NaN values" in err and "nothing prepared" in err and "Traceback" not in err
    assert not (models_dir / "nan").exists() and not list(models_dir.glob(".nan.partial*"))


def test_serving_a_plain_dir_with_nan_weights_is_refused_naming_file_and_tensor(
    nan_llama: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelFileError) as caught:
        resolve_checkpoint(str(nan_llama), _config(tmp_path / "models"))
    assert caught.value.exit_code == 2
    assert f"{nan_llama / 'model.safetensors'}: tensor 'model.embed_tokens.weight'" in str(
        caught.value
    )


def test_serving_a_plain_dir_with_a_corrupt_safetensors_names_the_file(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_llama_dir, tmp_path / "copy"))
    weights = copy / "model.safetensors"
    weights.write_bytes(b"\x00" * 8 + weights.read_bytes()[8:])  # header length: zero
    with pytest.raises(ModelFileError) as caught:
        resolve_checkpoint(str(copy), _config(tmp_path / "models"))
    assert f"{weights}: not a readable safetensors file" in str(caught.value)


def test_a_reused_prepared_model_is_checked_against_its_manifest(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    prepared = prepare_model(models_dir, source=str(tiny_llama_dir), name="tiny")
    config = _config(models_dir)
    assert resolve_checkpoint("tiny", config) == prepared.path
    weights = prepared.path / "model.safetensors"
    _flip(weights)

    with pytest.raises(ModelFileError) as caught:
        resolve_checkpoint("tiny", config)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert f"{weights}: sha256 mismatch" in message
    assert "chimera model prepare --name tiny --force" in message
    # Preparing again repairs it (the same source, a damaged copy: rebuilt).
    assert prepare_model(models_dir, source=str(tiny_llama_dir), name="tiny").built
    assert resolve_checkpoint("tiny", config) == prepared.path


def test_a_prepared_model_is_hashed_again_only_when_a_file_changed(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from chimera_core.serving import manifest

    models_dir = tmp_path / "models"
    prepare_model(models_dir, source=str(tiny_llama_dir), name="tiny")
    monkeypatch.setattr(verified, "RACY_SECONDS", 0.05)
    time.sleep(0.1)  # older than the racy window: a pass may be stamped
    hashed: list[Path] = []
    real_sha256 = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p: hashed.append(p) or real_sha256(p))
    config = _config(models_dir)

    resolve_checkpoint("tiny", config)  # the first use: a full check, then the stamp
    assert any(p.name == "model.safetensors" for p in hashed)
    hashed.clear()
    resolve_checkpoint("tiny", config)
    assert hashed == []  # unchanged: one stat per file, no hashing

    _flip(models_dir / "tiny" / "model.safetensors")  # same size, new ctime
    with pytest.raises(ModelFileError, match="sha256 mismatch"):
        resolve_checkpoint("tiny", config)


def test_the_weights_scan_reads_big_tensors_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "CHUNK_ELEMENTS", 64)  # slices of 8 rows of 8
    big = np.zeros((29, 8), np.float32)  # the last slice is short, and holds the NaN
    big[-1, -1] = np.nan
    tensors = {"embed": big, "scalar": np.array(1.0), "empty": np.zeros((0, 8), np.float32)}
    save_file(tensors, str(tmp_path / "m.safetensors"))
    assert weights.weights_problems(tmp_path) == [
        f"{tmp_path / 'm.safetensors'}: tensor 'embed' (F32) has NaN values"
    ]
    big[-1, -1] = 0.0
    save_file({**tensors, "embed": big}, str(tmp_path / "m.safetensors"))
    assert weights.weights_problems(tmp_path) == []
