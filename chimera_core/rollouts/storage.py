"""Where a rollout's record and spans live in the artifact store, and reading them back."""

from __future__ import annotations

from typing import Any

from chimera_core.artifacts import ArtifactStore, join_key
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.errors import ArtifactNotFound


def record_key(prefix: str, task_id: str) -> str:
    """Where a task's rollout record lives under a stage's rollout prefix."""
    return join_key(prefix, "records", f"{task_id}.json")


def spans_key(prefix: str, task_id: str) -> str:
    """Where a task's spans live under a stage's rollout prefix."""
    return join_key(prefix, "spans", f"{task_id}.json")


def load_record(store: ArtifactStore, key: str) -> RolloutRecord | None:
    """A stored record, or None when it does not exist yet."""
    try:
        return RolloutRecord.model_validate(store.get_json(key))
    except ArtifactNotFound:
        return None


def load_records(store: ArtifactStore, prefix: str) -> list[RolloutRecord]:
    """Every record under a rollout prefix, in key order."""
    return [
        RolloutRecord.model_validate(store.get_json(key))
        for key in store.list(join_key(prefix, "records"))
        if key.endswith(".json")
    ]


def load_spans(store: ArtifactStore, prefix: str, task_id: str) -> list[dict[str, Any]]:
    """The saved spans of one task's rollout (empty if none were saved)."""
    try:
        spans: list[dict[str, Any]] = store.get_json(spans_key(prefix, task_id))
    except ArtifactNotFound:
        return []
    return spans
