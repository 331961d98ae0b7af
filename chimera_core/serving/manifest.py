"""The manifest of a prepared model (``chimera_model.json``) and checks of an HF directory."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from chimera_core.artifacts.base import sha256_file

MANIFEST = "chimera_model.json"
FORMAT_VERSION = 1


class FileRecord(BaseModel):
    """One file of a prepared directory."""

    sha256: str
    bytes: int


class SourceRecord(BaseModel):
    """Where a prepared model came from; ``fingerprint`` changes when the source does."""

    kind: Literal["gguf", "hf-dir", "hub"]
    ref: str
    fingerprint: str


class ModelManifest(BaseModel):
    """Contents of ``chimera_model.json``: the version record of a prepared model."""

    format: int = FORMAT_VERSION
    name: str
    version: str = Field(description="'base' for the bundled base model, else 'prepared'.")
    source: SourceRecord
    files: dict[str, FileRecord]
    architecture: str
    num_parameters: int
    dtype: str
    chat_template: bool
    created_at: str
    transformers_version: str


def has_chat_template(path: Path) -> bool:
    """Whether an HF directory carries a chat template (file or tokenizer_config entry)."""
    template = path / "chat_template.jinja"
    if template.is_file() and template.stat().st_size > 0:
        return True
    config = path / "tokenizer_config.json"
    if config.is_file():
        with contextlib.suppress(ValueError):
            return bool(json.loads(config.read_text()).get("chat_template"))
    return False


def read_manifest(path: Path) -> ModelManifest | None:
    """The manifest of a prepared directory, or None when missing or unreadable."""
    try:
        return ModelManifest.model_validate_json((path / MANIFEST).read_text())
    except (OSError, ValidationError, ValueError):
        return None


def structure_problems(path: Path) -> list[str]:
    """What an HF directory lacks for serving: config, tokenizer, chat template, weights."""
    if not path.is_dir():
        return [f"{path}: not a directory"]
    problems = []
    try:
        config = json.loads((path / "config.json").read_text())
        if "model_type" not in config:
            problems.append(f"{path / 'config.json'}: no model_type")
    except (OSError, ValueError) as exc:
        problems.append(f"{path / 'config.json'}: unreadable ({exc})")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        problems.append(f"{path}: no tokenizer files")
    if not has_chat_template(path):
        problems.append(f"{path}: no chat template (chat_template.jinja or tokenizer_config.json)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        problems.append(f"{path}: no weights (*.safetensors)")
    return problems


def verify_model_dir(path: Path, checksums: bool = True) -> list[str]:
    """Problems of a prepared directory (empty when it is complete and intact)."""
    manifest = read_manifest(path)
    if manifest is None:
        return [f"{path / MANIFEST}: missing or invalid (partial or foreign directory)"]
    problems = structure_problems(path)
    for name, record in manifest.files.items():
        file = path / name
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif file.stat().st_size != record.bytes:
            problems.append(f"{file}: {file.stat().st_size} bytes, expected {record.bytes}")
        elif checksums and sha256_file(file) != record.sha256:
            problems.append(f"{file}: sha256 mismatch (corrupt)")
    return problems
