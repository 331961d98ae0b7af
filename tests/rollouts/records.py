"""Rollout records for tests: a succeeded gather rollout, fields overridable."""

from __future__ import annotations

from chimera_core.data.rollouts import RolloutRecord


def make_record(task_id: str, **fields: object) -> RolloutRecord:
    """A succeeded gather record of run r1 for task_id; ``fields`` override any value."""
    values: dict[str, object] = {
        "rollout_id": f"ro-{task_id}",
        "run_id": "r1",
        "stage": "gather",
        "task_id": task_id,
        "status": "succeeded",
        "reward": 0.5,
        "expected_decision": "yes",
    }
    return RolloutRecord.model_validate({**values, **fields})
