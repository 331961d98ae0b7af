"""The gather's summary counts reward and tool failures per name (fast; no lab run)."""

from __future__ import annotations

from chimera_core.data.rollouts import RolloutRecord
from chimera_core.stages.gather import failure_counts


def _record(task_id: str, **fields: object) -> RolloutRecord:
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


def test_failures_are_counted_per_reward_and_per_tool() -> None:
    records = [
        _record("1", reward_failed=["boom"], tool_failures={"pubmed_search": 2}),
        _record("2", reward_failed=["boom", "llm_judge"], tool_failures={"pubmed_search": 1}),
        _record("3"),
    ]
    assert failure_counts(records) == {
        "reward_failures": {"boom": 2, "llm_judge": 1},
        "tool_failures": {"pubmed_search": 3},
    }
    assert failure_counts([_record("3")]) == {"reward_failures": {}, "tool_failures": {}}


def test_a_record_written_before_the_failure_fields_still_reads() -> None:
    assert _record("1").reward_failed == [] and _record("1").tool_failures == {}
