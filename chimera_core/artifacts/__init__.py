"""Artifact storage: one interface, a local-directory and an S3/MinIO backend."""

from __future__ import annotations

from chimera_core.artifacts.base import (
    MANIFEST,
    PROBE_PREFIX,
    ArtifactStore,
    join_key,
    normalize_key,
    sha256_file,
)
from chimera_core.artifacts.local import LocalArtifactStore
from chimera_core.config.models import ArtifactsConfig


def open_store(config: ArtifactsConfig) -> ArtifactStore:
    """The store a config names; S3 is imported only when used."""
    if config.backend == "s3":
        from chimera_core.artifacts.s3 import S3ArtifactStore

        return S3ArtifactStore.from_config(config)
    return LocalArtifactStore(config.local_root)


__all__ = [
    "MANIFEST",
    "PROBE_PREFIX",
    "ArtifactStore",
    "LocalArtifactStore",
    "join_key",
    "normalize_key",
    "open_store",
    "sha256_file",
]
