"""Evaluation metrics and the paired bootstrap on hand-built rollout records."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from chimera_core.data.rollouts import RoleUsage, RolloutRecord
from chimera_core.data.tasks import LABELS
from chimera_core.evaluation.metrics import (
    _codes,
    compute_metrics,
    macro_f1_rows,
    paired_bootstrap,
    paired_bootstrap_resampled,
)


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


def test_a_reward_component_is_compared_on_the_tasks_both_rollouts_scored() -> None:
    base = [_rec(str(i), "yes", "no", "NO-GO", 0.2) for i in range(30)]
    better = [_rec(str(i), "yes", "yes", "GO", 0.7) for i in range(30)]
    better[0].reward_components = {}  # the judge failed on task 0: that pair is left out
    cmp = paired_bootstrap(base, better, "reward:llm_judge")
    assert cmp.n_pairs == 29 and cmp.delta == pytest.approx(0.5) and cmp.significant
    assert cmp.baseline == pytest.approx(0.2) and cmp.challenger == pytest.approx(0.7)
    assert paired_bootstrap(base, better, "reward:protocol_rubric").n_pairs == 0  # never scored


def _sklearn_macro_f1(truth: list[str], pred: list[str]) -> float:
    present = [lb for lb in LABELS if lb in truth]
    return float(f1_score(truth, pred, labels=present, average="macro", zero_division=0))


def test_macro_f1_rows_equals_sklearn() -> None:
    rng = np.random.default_rng(3)
    answers = [*LABELS, "none"]
    for n in (1, 2, 5, 17, 60):
        for _ in range(20):
            # Labels drawn from a random subset, so some resamples miss a label entirely; an
            # unknown label in the truth is no class of its own (as with sklearn's labels=).
            truth = ["yes", *rng.choice([*LABELS[: rng.integers(1, 4)], "odd"], size=n - 1)]
            pred = list(rng.choice(answers, size=n))
            got = macro_f1_rows(_codes(truth)[None], _codes(pred)[None])[0]
            assert got == pytest.approx(_sklearn_macro_f1(truth, pred))


def test_compute_metrics_macro_f1_is_sklearns() -> None:
    records = [
        _rec("1", "yes", "yes", "GO", 0.8),
        _rec("2", "no", "yes", "GO", 0.4),
        _rec("3", "maybe", "maybe", "NO-GO", 0.6),
        _rec("4", "yes", None, None, 0.0, status="failed"),
        _rec("5", "no", "no", "NO-GO", 0.9),
    ]
    m = compute_metrics(records, majority_label="yes")
    truth = ["yes", "no", "maybe", "yes", "no"]
    assert m.macro_f1 == pytest.approx(
        _sklearn_macro_f1(truth, ["yes", "yes", "maybe", "none", "no"])
    )
    assert m.majority_macro_f1 == pytest.approx(_sklearn_macro_f1(truth, ["yes"] * 5))
    assert compute_metrics([]).macro_f1 == 0.0


def _answering(labels: list[str], answers: list[str | None]) -> list[RolloutRecord]:
    return [
        _rec(str(i), lb, ans, None, 0.5, status="succeeded" if ans else "failed")
        for i, (lb, ans) in enumerate(zip(labels, answers, strict=True))
    ]


def test_macro_f1_bootstrap_recomputes_the_statistic_on_resampled_tasks() -> None:
    labels = ["yes", "no", "maybe"] * 20
    base = _answering(labels, ["yes"] * 60)  # "yes" to everything: macro-F1 near 1/6
    better = _answering(labels, [lb if i % 4 else "no" for i, lb in enumerate(labels)])
    cmp = paired_bootstrap_resampled(base, better, samples=500)
    assert cmp.metric == "macro_f1" and cmp.n_pairs == 60
    # The point values are each set's macro-F1 over the paired tasks, as compute_metrics has it.
    assert cmp.baseline == pytest.approx(compute_metrics(base).macro_f1)
    assert cmp.challenger == pytest.approx(compute_metrics(better).macro_f1)
    assert cmp.delta == pytest.approx(cmp.challenger - cmp.baseline)
    assert cmp.significant and 0 < cmp.ci_low < cmp.delta < cmp.ci_high
    # paired_bootstrap hands a set-level metric to the resampling one: same seed, same result.
    assert paired_bootstrap(base, better, "macro_f1", samples=500) == cmp
    same = paired_bootstrap_resampled(base, base, samples=200)
    assert same.delta == same.ci_low == same.ci_high == 0


def test_macro_f1_bootstrap_counts_a_failed_rollout_as_wrong() -> None:
    labels = ["yes", "no", "maybe"] * 4
    right = _answering(labels, list(labels))
    failed = _answering(labels, [None if i < 6 else lb for i, lb in enumerate(labels)])
    cmp = paired_bootstrap_resampled(right, failed, samples=200)
    assert cmp.n_pairs == 12 and cmp.baseline == 1.0
    assert cmp.challenger == pytest.approx(compute_metrics(failed).macro_f1) and cmp.delta < 0


def test_macro_f1_bootstrap_pairs_only_shared_tasks() -> None:
    base = _answering(["yes", "no"], ["yes", "no"])
    assert paired_bootstrap_resampled(base, [], samples=100).n_pairs == 0
    other = [_rec("9", "yes", "yes", "GO", 1.0)]
    assert paired_bootstrap_resampled(base, base[:1] + other, samples=100).n_pairs == 1
    with pytest.raises(ValueError, match="not a resampled metric"):
        paired_bootstrap_resampled(base, base, "mean_reward")
