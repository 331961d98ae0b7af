"""Versioned model checkpoints per alias, with lineage and a champion pointer.

Layout: ``models/<alias>/versions/<version>/`` (the version's files published with a manifest,
sha256 per file, whose metadata is the version record) and ``models/<alias>/champion.json``.
A version of an LLM alias is a LoRA adapter directory over the alias's base model (what vLLM
serves); the bandit policy's versions are its own files. The version ``base`` is the prepared
base model: it is never uploaded, every machine prepares it locally. A *model set* maps each
alias to a version; ``base`` and ``champion`` are the two named sets.

The local cache (``<models_dir>/registry/<alias>/<version>/``) is never trusted on its own: every
fetch checks each cached file's size and sha256 against the store's manifest (its own copy of
the manifest could have been edited with it) and fetches a damaged copy again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from chimera_core.artifacts import ArtifactStore, join_key, open_store
from chimera_core.artifacts.base import MANIFEST, sha256_file
from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ArtifactNotFound, ChimeraError, ModelFileError
from chimera_core.logs import get_logger
from chimera_core.training.checkpoint import (
    ADAPTER_CONFIG,
    is_adapter_dir,
    merge_adapter,
    require_empty_dir,
)
from chimera_core.training.weights import weights_problems

BASE = "base"
MODELS_PREFIX = "models"
log = get_logger("registry")


class ModelVersion(BaseModel):
    """One registered checkpoint of an alias and where it came from."""

    alias: str
    version: str
    parent: str = Field(description="Version it was trained from.")
    stage: str = Field(description="Stage that produced it (sft, ppo, ...).")
    run_id: str
    data_sha256: str | None = Field(None, description="Training data artifact's sha256.")
    task_ids: list[str] = Field(
        default_factory=list, description="Tasks whose rollouts it was trained on (its own step)."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Training settings.")
    metrics: dict[str, Any] = Field(default_factory=dict)
    uri: str = ""
    created_at: str = ""


class ModelRegistry:
    """Register, list, fetch and promote versions of each model alias."""

    def __init__(self, store: ArtifactStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = Path(cache_dir)

    @classmethod
    def for_config(cls, config: ChimeraConfig, store: ArtifactStore | None = None) -> ModelRegistry:
        """The registry on the config's artifact store, fetched versions cached in models_dir."""
        return cls(store or open_store(config.artifacts), config.serving.models_dir / "registry")

    def _prefix(self, alias: str, version: str) -> str:
        return join_key(MODELS_PREFIX, alias, "versions", version)

    def register(
        self,
        alias: str,
        checkpoint_dir: Path,
        *,
        parent: str,
        stage: str,
        run_id: str,
        data_sha256: str | None = None,
        config: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        task_ids: list[str] | None = None,
        new_revision: bool = False,
    ) -> ModelVersion:
        """Upload a directory as version ``<stage>-<run_id>`` (idempotent for a run).

        With ``new_revision`` (a forced rerun) an existing version is kept, as versions are
        immutable, and the directory becomes ``<stage>-<run_id>-2`` (``-3``, ...) instead.
        """
        version = f"{stage}-{run_id}"
        prefix = self._prefix(alias, version)
        if self.store.is_published(prefix):
            if not new_revision:
                return self.get(alias, version)
            n = 2
            while self.store.is_published(self._prefix(alias, f"{version}-{n}")):
                n += 1
            version = f"{version}-{n}"
            prefix = self._prefix(alias, version)
        if problems := weights_problems(checkpoint_dir):
            raise ModelFileError(
                f"refusing to register {checkpoint_dir} as version {version!r} of model "
                f"{alias!r}: {'; '.join(problems)}. Nothing was registered; a trainer whose "
                "weights turn NaN or Inf diverged (lower its learning rate, check its data)"
            )
        record = ModelVersion(
            alias=alias,
            version=version,
            parent=parent,
            stage=stage,
            run_id=run_id,
            data_sha256=data_sha256,
            task_ids=sorted(task_ids or []),
            config=config or {},
            metrics=metrics or {},
            uri=self.store.uri(prefix),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self.store.put_dir(prefix, checkpoint_dir, metadata=record.model_dump(mode="json"))
        return record

    def get(self, alias: str, version: str) -> ModelVersion:
        """A version's record; ``base`` always exists."""
        if version == BASE:
            return ModelVersion(alias=alias, version=BASE, parent="", stage="prepare", run_id="")
        return ModelVersion.model_validate(self._manifest(alias, version)["metadata"])

    def _manifest(self, alias: str, version: str) -> dict[str, Any]:
        """The store's manifest of a version: its files' sha256 and size, its record."""
        try:
            manifest: dict[str, Any] = self.store.get_json(
                join_key(self._prefix(alias, version), MANIFEST)
            )
        except ArtifactNotFound:
            known = ", ".join(self.versions(alias)) or "only base"
            raise ChimeraError(
                f"unknown version {version!r} of model {alias!r} (known: {known})"
            ) from None
        return manifest

    def lineage_tasks(self, alias: str, version: str) -> dict[str, str]:
        """Task id -> the version in this version's lineage (itself, its parents) trained on it."""
        seen: dict[str, str] = {}
        while version != BASE:
            record = self.get(alias, version)
            for task_id in record.task_ids:
                seen.setdefault(task_id, version)
            version = record.parent or BASE
        return seen

    def versions(self, alias: str) -> list[str]:
        """Registered (uploaded) versions of an alias, oldest first by name."""
        prefix = join_key(MODELS_PREFIX, alias, "versions")
        return sorted(
            {
                key.split("/")[3]
                for key in self.store.list(prefix)
                if key.endswith("/manifest.json") and key.count("/") == 4
            }
        )

    def aliases(self) -> list[str]:
        """Aliases with at least one registered version or a champion."""
        return sorted({key.split("/")[1] for key in self.store.list(MODELS_PREFIX)})

    def _champion_key(self, alias: str) -> str:
        return join_key(MODELS_PREFIX, alias, "champion.json")

    def champion_record(self, alias: str) -> dict[str, Any]:
        """The champion pointer: version, reason, when, and the earlier champions (oldest first)."""
        key = self._champion_key(alias)
        if not self.store.exists(key):
            return {"version": BASE, "reason": "initial", "promoted_at": "", "history": []}
        record: dict[str, Any] = self.store.get_json(key)
        record.setdefault("history", [])
        return record

    def champion(self, alias: str) -> str:
        """The alias's champion version (``base`` until one is promoted)."""
        return str(self.champion_record(alias)["version"])

    def promote(self, alias: str, version: str, reason: str) -> None:
        """Make a version the alias's champion; the one it replaces goes on the history."""
        self.get(alias, version)  # must exist
        current = self.champion_record(alias)
        history = [*current.pop("history"), _entry(current)]
        self._write_champion(alias, version, reason, history)

    def rollback(self, alias: str, reason: str = "") -> str:
        """Make the previous champion the champion again; returns its version."""
        current = self.champion_record(alias)
        history = current["history"]
        if not history:
            raise ChimeraError(
                f"model {alias!r} has no earlier champion to roll back to "
                f"(champion: {current['version']})"
            )
        back = history[-1]["version"]
        note = f"rollback from {current['version']}" + (f": {reason}" if reason else "")
        self._write_champion(alias, back, note, history[:-1])
        return str(back)

    def _write_champion(
        self, alias: str, version: str, reason: str, history: list[dict[str, Any]]
    ) -> None:
        self.store.put_json(
            self._champion_key(alias),
            {
                "version": version,
                "previous": history[-1]["version"] if history else None,
                "reason": reason,
                "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "history": history,
            },
        )

    def model_set(self, name: str, aliases: Iterable[str]) -> dict[str, str]:
        """Resolve a set name to alias -> version.

        ``base``, ``champion``, or ``run:<RUN_ID>``: the versions that run registered, with the
        champion for every alias it did not train.
        """
        if name == BASE:
            return dict.fromkeys(aliases, BASE)
        if name == "champion":
            return {alias: self.champion(alias) for alias in aliases}
        if name.startswith("run:"):
            run_id = name.removeprefix("run:")
            trained = {
                alias: max(mine, key=lambda r: (r.created_at, len(r.version), r.version)).version
                for alias in aliases
                if (
                    mine := [
                        r
                        for v in self.versions(alias)
                        if (r := self.get(alias, v)).run_id == run_id
                    ]
                )
            }
            if not trained:
                raise ChimeraError(f"run {run_id!r} registered no model versions")
            return {alias: trained.get(alias) or self.champion(alias) for alias in aliases}
        raise ChimeraError(f"unknown model set {name!r} (expected base, champion or run:<RUN_ID>)")

    def run_of(self, alias: str, version: str) -> str:
        """The run id that trained a version."""
        return self.get(alias, version).run_id

    def fetch(self, alias: str, version: str) -> Path:
        """A local copy of an uploaded version, checked against the store's manifest each call.

        A cached copy that differs (a file edited, missing, added, or with bad weights) is
        fetched again with a warning naming the file. Versions are small (LoRA adapters, a
        bandit policy): hashing them on every read costs milliseconds.
        """
        if version == BASE:
            raise ChimeraError("the base version is prepared locally, not fetched")
        files = self._manifest(alias, version)["files"]
        dest = self.cache_dir / alias / version
        if dest.is_dir():
            problem = _copy_problem(dest, files)
            if problem is None:
                return dest
            log.warning(
                "cached copy of %s %s is damaged: %s; fetching it again from the store",
                alias,
                version,
                problem,
            )
            shutil.rmtree(dest)  # never left for a reader, even if the store's copy fails too
        return self._download(alias, version, files, dest)

    def _download(self, alias: str, version: str, files: dict[str, Any], dest: Path) -> Path:
        """Fetch a version into a partial directory, check it, then move it into place."""
        partial = dest.with_name(f".{version}.partial")
        shutil.rmtree(partial, ignore_errors=True)  # never mix in a stale attempt's files
        prefix = self._prefix(alias, version)
        try:
            # Checked here against the same manifest, so the error names alias and version.
            self.store.get_dir(prefix, partial, verify=False)
            problem = _copy_problem(partial, files, where=self.store.uri(prefix))
        except ArtifactNotFound as exc:
            problem = f"a file is missing ({exc})"
        except BaseException:  # the store failed (a fault): leave no half-fetched copy
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if problem:
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelFileError(self._damaged(alias, version, problem))
        partial.rename(dest)
        return dest

    @staticmethod
    def _damaged(alias: str, version: str, problem: str) -> str:
        """The message for a version whose stored copy fails its check, with the ways out."""
        return (
            f"version {version!r} of model {alias!r} is damaged in the artifact store: {problem}. "
            f"Make another version the champion (`chimera registry rollback {alias}` or "
            f"`chimera registry promote {alias} VERSION`), or retrain it (the stage that made it, "
            "with --force, registers a new version)"
        )

    def fetch_adapter(self, alias: str, version: str) -> Path:
        """A local copy of a version that must be a LoRA adapter (what trainers and vLLM load)."""
        if version == BASE:
            raise ChimeraError(f"version base of model {alias!r} is the base model, not an adapter")
        local = self.fetch(alias, version)
        if not is_adapter_dir(local):
            raise ChimeraError(
                f"version {version!r} of model {alias!r} is not a LoRA adapter (no {ADAPTER_CONFIG}"
                "): only an LLM alias's adapter versions can be continued, served or merged. "
                "A champion registered before adapters (a merged checkpoint) is retired with "
                f"`chimera registry promote {alias} base` or `chimera registry rollback {alias}`"
            )
        return local

    def export_merged(self, alias: str, version: str, base_dir: Path, dest: Path) -> Path:
        """Write an adapter version merged into ``base_dir`` as a plain HF checkpoint in ``dest``.

        For deploying without LoRA support; ``dest`` must be new or empty. The merge is
        written beside it and moved in only when its weights are all finite.
        """
        require_empty_dir(dest)
        adapter = self.fetch_adapter(alias, version)
        partial = dest.with_name(f".{dest.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            merge_adapter(base_dir, adapter, partial)
            if problems := weights_problems(partial, shown_as=str(dest)):
                raise ModelFileError(
                    f"{alias} {version} merged into {base_dir} has bad weights: "
                    f"{'; '.join(problems)}. Nothing was exported"
                )
            if dest.exists():
                dest.rmdir()  # empty: require_empty_dir said so
            partial.rename(dest)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return dest


def _copy_problem(local: Path, files: dict[str, Any], where: str | None = None) -> str | None:
    """The first difference of a local copy from the store's manifest, or None.

    Sizes first (free), then sha256, then the weights' values: a version registered before
    weights were checked may hold NaN. ``where`` names the files (default: the local paths).
    """

    def shown(name: str) -> str:
        return f"{where}/{name}" if where else str(local / name)

    for name, info in sorted(files.items()):
        file = local / name
        if not file.is_file():
            return f"{shown(name)}: missing"
        if "size" in info and file.stat().st_size != info["size"]:
            return f"{shown(name)}: {file.stat().st_size} bytes, expected {info['size']}"
        if sha256_file(file) != info["sha256"]:
            return f"{shown(name)}: sha256 differs from the store's manifest"
    present = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    if extra := sorted(present - set(files) - {MANIFEST}):
        return f"{shown(extra[0])}: not in the store's manifest"
    problems = weights_problems(local, shown_as=where)
    return problems[0] if problems else None


def _entry(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("version", "reason", "promoted_at")}
