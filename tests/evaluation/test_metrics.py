"""Evaluation metrics and the paired bootstrap on hand-built rollout records."""

from __future__ import annotations

import pytest

from chimera_core.data.rollouts import RoleUsage, RolloutRecord
from chimera_core.evaluation.metrics import compute_metrics, paired_bootstrap


def _rec(task: str, label: str, answer: str | None, decision: str | None, reward: float,
         status: str = "succeeded") -> RolloutRecord:  # fmt: skip
    return RolloutRecord(
        rollout_id=f"ro-{task}",
        run_id="r",
        stage="evaluate",
        task_id=task,
        status=status,  # type: ignore[arg-type]
        expected_decision=label,
        final_answer=answer,
        final_decision=decision,
        reward=reward,
        reward_breakdown={"llm_judge.novelty": reward, "protocol_rubric.steps_present": 1.0},
        reward_components={"llm_judge": reward},
        turns=8,
        latency_s=2.0,
        usage={"PI": RoleUsage(calls=1, prompt_tokens=100, completion_tokens=20)},
        schema_valid={"PI": answer is not None},
    )


def test_compute_metrics() -> None:
    records = [
        _rec("1", "yes", "yes", "GO", 0.8),
        _rec("2", "no", "yes", "GO", 0.4),
        _rec("3", "maybe", "maybe", "NO-GO", 0.6),
        _rec("4", "yes", None, None, 0.0, status="failed"),
    ]
    m = compute_metrics(records, majority_label="yes")
    assert m.n == 4 and m.success_rate == 0.75
    assert m.mean_reward == pytest.approx(0.45)
    assert m.decision_alignment == 0.25  # only task 1 aligns under GO<->yes / NO-GO<->no
    assert m.exact_accuracy == 0.5
    assert m.majority_accuracy == 0.5
    assert m.judge_criteria == {"novelty": pytest.approx(0.6)}
    assert m.schema_valid_rate == {"PI": 0.75}
    assert m.mean_tokens == 120
    # rows: label yes/no/maybe; columns: answer yes/no/maybe/none
    assert m.confusion == [[1, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]]
    assert 0 < m.macro_f1 < 1


def test_paired_bootstrap_detects_a_consistent_gain() -> None:
    base = [_rec(str(i), "yes", "no", "NO-GO", 0.3 + 0.01 * (i % 5)) for i in range(40)]
    better = [_rec(str(i), "yes", "yes", "GO", 0.5 + 0.01 * (i % 7)) for i in range(40)]
    cmp = paired_bootstrap(base, better, "mean_reward")
    assert cmp.n_pairs == 40 and cmp.delta > 0.15 and cmp.significant
    same = paired_bootstrap(base, base, "exact_accuracy")
    assert same.delta == 0 and not same.significant
    assert paired_bootstrap(base, [], "mean_reward").n_pairs == 0
