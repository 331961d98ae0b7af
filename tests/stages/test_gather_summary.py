"""The gather's summary counts reward and tool failures per name (fast; no lab run)."""

from __future__ import annotations

from chimera_core.stages.gather import failure_counts
from tests.rollouts.records import make_record


def test_failures_are_counted_per_reward_and_per_tool() -> None:
    records = [
        make_record("1", reward_failed=["boom"], tool_failures={"pubmed_search": 2}),
        make_record("2", reward_failed=["boom", "llm_judge"], tool_failures={"pubmed_search": 1}),
        make_record("3"),
    ]
    assert failure_counts(records) == {
        "reward_failures": {"boom": 2, "llm_judge": 1},
        "tool_failures": {"pubmed_search": 3},
    }
    assert failure_counts([make_record("3")]) == {"reward_failures": {}, "tool_failures": {}}


def test_a_record_written_before_the_failure_fields_still_reads() -> None:
    assert make_record("1").reward_failed == [] and make_record("1").tool_failures == {}
