"""Where a rollout's record and spans live in the artifact store, and reading them back."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from chimera_core.artifacts import ArtifactStore, join_key
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.errors import ArtifactError, ArtifactNotFound, StorageFault
from chimera_core.logs import get_logger

log = get_logger("rollouts")


def record_key(prefix: str, task_id: str) -> str:
    """Where a task's rollout record lives under a stage's rollout prefix."""
    return join_key(prefix, "records", f"{task_id}.json")


def spans_key(prefix: str, task_id: str) -> str:
    """Where a task's spans live under a stage's rollout prefix."""
    return join_key(prefix, "spans", f"{task_id}.json")


def save_record(store: ArtifactStore, key: str, record: RolloutRecord) -> bool:
    """Write a rollout's record; return whether the store took it.

    A store that refuses it (disk full, read-only, unreachable) is logged, naming the key and
    the error, and does not raise: the rollout is over either way, and the stage, finding the
    record missing, fails naming the store (``run_rollouts``) so a rerun runs it again.
    """
    try:
        store.put_json(key, record.model_dump(mode="json"))
    except (ArtifactError, OSError) as exc:
        log.error("task %s: its rollout record was not saved: %s", record.task_id, exc)
        return False
    return True


def load_record(store: ArtifactStore, key: str) -> RolloutRecord | None:
    """A stored record, or None when it does not exist yet or cannot be read.

    An unreadable record (truncated upload, hand edit, older schema) counts as absent, with a
    warning naming it: its task runs again instead of one file stopping the whole stage. A store
    that fails the read (``StorageFault``: unreachable after retries, an I/O error) raises.
    """
    try:
        return RolloutRecord.model_validate(store.get_json(key))
    except ArtifactNotFound:
        return None
    except StorageFault:  # the store failed the read: the record may be fine, nothing to guess
        raise
    except (ArtifactError, ValidationError) as exc:
        reason = str(exc).splitlines()[0]
        log.warning("unreadable rollout record %s (%s); treated as absent", store.uri(key), reason)
        return None


def load_records(store: ArtifactStore, prefix: str) -> list[RolloutRecord]:
    """Every readable record under a rollout prefix, in key order (unreadable ones skipped)."""
    keys = [k for k in store.list(join_key(prefix, "records")) if k.endswith(".json")]
    return [r for r in (load_record(store, k) for k in keys) if r is not None]


def read_spans(store: ArtifactStore, prefix: str, task_id: str) -> list[dict[str, Any]] | None:
    """A task's saved spans, or None when the file is missing or unreadable.

    Unreadable means not JSON or JSON of the wrong shape (spans are a list of objects); it is
    treated like a missing file, with a warning naming it, as an unreadable record is.
    """
    key = spans_key(prefix, task_id)
    try:
        spans = store.get_json(key)
    except ArtifactNotFound:
        return None
    except StorageFault:
        raise
    except ArtifactError as exc:
        log.warning("unreadable spans %s (%s); treated as absent", store.uri(key), exc)
        return None
    if not isinstance(spans, list) or not all(isinstance(s, dict) for s in spans):
        log.warning(
            "unreadable spans %s (not a list of span objects); treated as absent", store.uri(key)
        )
        return None
    return spans


def load_spans(store: ArtifactStore, prefix: str, task_id: str) -> list[dict[str, Any]]:
    """The saved spans of one task's rollout (empty if none were saved or they are unreadable)."""
    return read_spans(store, prefix, task_id) or []
