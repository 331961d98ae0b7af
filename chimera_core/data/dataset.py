"""The task-dataset artifact: versioned JSONL plus a manifest, published atomically.

Layout in the store: ``datasets/pubmedqa/<version>/{tasks.jsonl,manifest.json}`` and a
``datasets/pubmedqa/CURRENT.json`` pointer written last, so a failed ingest never becomes
the current version.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chimera_core.artifacts import ArtifactStore, join_key
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ArtifactNotFound, DataError

DATASET_PREFIX = "datasets/pubmedqa"
TASKS_FILE = "tasks.jsonl"
CURRENT = "CURRENT.json"


class DatasetManifest(BaseModel):
    """What a task-dataset version holds."""

    version: str
    uri: str
    source: str
    split_method: str
    sha256: str
    n_tasks: int
    counts: dict[str, dict[str, int]]  # split -> label -> count
    label_totals: dict[str, int]
    created_at: str


def _serialize(tasks: list[ResearchTask]) -> bytes:
    return b"".join(
        json.dumps(t.model_dump(mode="json"), sort_keys=True).encode() + b"\n" for t in tasks
    )


def publish_task_dataset(
    store: ArtifactStore, tasks: list[ResearchTask], source: str, split_method: str
) -> DatasetManifest:
    """Write a new dataset version (content-addressed) and make it current; idempotent."""
    payload = _serialize(tasks)
    sha = hashlib.sha256(payload).hexdigest()
    version = f"{split_method}-{sha[:12]}"
    prefix = join_key(DATASET_PREFIX, version)
    counts: dict[str, Counter[str]] = {}
    for t in tasks:
        counts.setdefault(t.split, Counter())[t.expected_decision] += 1
    manifest = DatasetManifest(
        version=version,
        uri=store.uri(prefix),
        source=source,
        split_method=split_method,
        sha256=sha,
        n_tasks=len(tasks),
        counts={s: dict(sorted(c.items())) for s, c in sorted(counts.items())},
        label_totals=dict(sorted(Counter(t.expected_decision for t in tasks).items())),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    # A published version whose tasks file no longer matches its checksum (a partial copy, a
    # hand edit) is published again: ingesting the same content is how it is repaired.
    if not store.is_published(prefix) or not _intact(store, prefix, sha):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / TASKS_FILE).write_bytes(payload)
            store.put_dir(prefix, Path(tmp), metadata=manifest.model_dump())
    store.put_json(join_key(DATASET_PREFIX, CURRENT), {"version": version})
    return manifest


def _intact(store: ArtifactStore, prefix: str, sha: str) -> bool:
    """Whether a published version's tasks file is there and matches its checksum."""
    try:
        payload = store.get_bytes(join_key(prefix, TASKS_FILE))
    except ArtifactNotFound:
        return False
    return hashlib.sha256(payload).hexdigest() == sha


def current_version(store: ArtifactStore) -> str:
    """The version the CURRENT pointer names."""
    try:
        return str(store.get_json(join_key(DATASET_PREFIX, CURRENT))["version"])
    except ArtifactNotFound:
        raise DataError("no task dataset yet: run `chimera ingest` first") from None


def load_task_dataset(
    store: ArtifactStore, version: str | None = None
) -> tuple[DatasetManifest, list[ResearchTask]]:
    """A dataset version's manifest and tasks (default: the current version)."""
    version = version or current_version(store)
    prefix = join_key(DATASET_PREFIX, version)
    try:
        raw_manifest: dict[str, Any] = store.get_json(join_key(prefix, "manifest.json"))
    except ArtifactNotFound:
        raise DataError(
            f"unknown dataset version {version!r} in {store.uri(DATASET_PREFIX)}"
        ) from None
    manifest = DatasetManifest.model_validate(raw_manifest["metadata"])
    if not _intact(store, prefix, manifest.sha256):
        raise DataError(
            f"{store.uri(join_key(prefix, TASKS_FILE))}: missing or fails its checksum (dataset "
            f"version {version!r} is damaged); run `chimera ingest` with the same source and "
            "split to publish it again"
        )
    payload = store.get_bytes(join_key(prefix, TASKS_FILE))
    tasks = [ResearchTask.model_validate_json(line) for line in payload.splitlines() if line]
    return manifest, tasks


def list_versions(store: ArtifactStore) -> list[str]:
    """Published dataset versions."""
    return sorted(
        {
            key.split("/")[2]
            for key in store.list(DATASET_PREFIX)
            if key.endswith("/manifest.json") and key.count("/") == 3
        }
    )
