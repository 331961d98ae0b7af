"""Metrics over a list of rollouts, and paired comparison of two model sets on the same tasks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field
from sklearn.metrics import confusion_matrix, f1_score

from chimera_core.data.rollouts import RolloutRecord
from chimera_core.data.tasks import LABELS

_GO_FOR_LABEL = {"yes": "GO", "no": "NO-GO"}


class EvalMetrics(BaseModel):
    """What evaluation reports for one model set."""

    n: int
    success_rate: float
    mean_reward: float
    reward_components: dict[str, float] = Field(default_factory=dict)
    judge_criteria: dict[str, float] = Field(default_factory=dict)
    decision_alignment: float = Field(description="GO<->yes, NO-GO<->no (the original rule).")
    exact_accuracy: float = Field(description="PI answer == label, yes/no/maybe.")
    macro_f1: float
    majority_label: str
    majority_accuracy: float
    majority_macro_f1: float
    schema_valid_rate: dict[str, float] = Field(default_factory=dict)
    truncated_rate: dict[str, float] = Field(
        default_factory=dict, description="Role -> share of rollouts whose answer was cut."
    )
    mean_turns: float
    mean_tokens: float
    mean_latency_s: float
    confusion: list[list[int]] = Field(description="Rows: label yes/no/maybe; columns: answer.")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def _answers(records: Sequence[RolloutRecord]) -> tuple[list[str], list[str]]:
    # A failed or answerless rollout counts as a wrong answer, not as a skipped one.
    truth = [r.expected_decision for r in records]
    pred = [r.final_answer if r.final_answer in LABELS else "none" for r in records]
    return truth, pred


def compute_metrics(
    records: Sequence[RolloutRecord], majority_label: str | None = None
) -> EvalMetrics:
    """Aggregate metrics; ``majority_label`` is the training split's most common label."""
    n = len(records)
    ok = [r for r in records if r.status == "succeeded"]
    truth, pred = _answers(records)
    majority = majority_label or (Counter(truth).most_common(1)[0][0] if truth else "yes")
    criteria: dict[str, list[float]] = {}
    components: dict[str, list[float]] = {}
    for r in ok:
        for key, value in r.reward_breakdown.items():
            if key.startswith("llm_judge."):
                criteria.setdefault(key.removeprefix("llm_judge."), []).append(value)
        for key, value in r.reward_components.items():
            components.setdefault(key, []).append(value)
    roles = sorted({role for r in records for role in r.schema_valid})
    labels_present = [lb for lb in LABELS if lb in truth]
    return EvalMetrics(
        n=n,
        success_rate=len(ok) / n if n else 0.0,
        mean_reward=_mean([r.reward or 0.0 for r in records]),
        reward_components={k: _mean(v) for k, v in sorted(components.items())},
        judge_criteria={k: _mean(v) for k, v in sorted(criteria.items())},
        decision_alignment=_mean(
            [float(_GO_FOR_LABEL.get(r.expected_decision) == r.final_decision) for r in records]
        ),
        exact_accuracy=_mean([float(t == p) for t, p in zip(truth, pred, strict=True)]),
        macro_f1=float(
            f1_score(truth, pred, labels=labels_present, average="macro", zero_division=0)
        )
        if n
        else 0.0,
        majority_label=majority,
        majority_accuracy=_mean([float(t == majority) for t in truth]),
        majority_macro_f1=float(
            f1_score(truth, [majority] * n, labels=labels_present, average="macro", zero_division=0)
        )
        if n
        else 0.0,
        schema_valid_rate={
            role: _mean([float(r.schema_valid[role]) for r in records if role in r.schema_valid])
            for role in roles
        },
        truncated_rate={
            role: _mean([float(r.truncated[role]) for r in records if role in r.truncated])
            for role in sorted({role for r in records for role in r.truncated})
        },
        mean_turns=_mean([r.turns for r in records]),
        mean_tokens=_mean([r.total_tokens for r in records]),
        mean_latency_s=_mean([r.latency_s for r in records]),
        confusion=confusion_matrix(truth, pred, labels=[*LABELS, "none"])[:3].tolist() if n else [],
    )


class PairedComparison(BaseModel):
    """Challenger minus baseline on the same tasks, with a paired bootstrap interval."""

    metric: str
    n_pairs: int
    baseline: float
    challenger: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.ci_low > 0 or self.ci_high < 0


PER_ROLLOUT: dict[str, Callable[[RolloutRecord], float]] = {
    "mean_reward": lambda r: r.reward or 0.0,
    "exact_accuracy": lambda r: float(r.final_answer == r.expected_decision),
    "decision_alignment": lambda r: float(
        _GO_FOR_LABEL.get(r.expected_decision) == r.final_decision
    ),
    "success_rate": lambda r: float(r.status == "succeeded"),
}


def paired_bootstrap(
    baseline: Sequence[RolloutRecord],
    challenger: Sequence[RolloutRecord],
    metric: str = "mean_reward",
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Bootstrap the mean per-task difference over tasks both sets ran."""
    value = PER_ROLLOUT[metric]
    base_by_task = {r.task_id: value(r) for r in baseline}
    pairs = [(base_by_task[r.task_id], value(r)) for r in challenger if r.task_id in base_by_task]
    if not pairs:
        return PairedComparison(
            metric=metric, n_pairs=0, baseline=0, challenger=0, delta=0, ci_low=0, ci_high=0,
            confidence=confidence,
        )  # fmt: skip
    b = np.asarray([p[0] for p in pairs])
    c = np.asarray([p[1] for p in pairs])
    diff = c - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    boot = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return PairedComparison(
        metric=metric,
        n_pairs=len(pairs),
        baseline=float(b.mean()),
        challenger=float(c.mean()),
        delta=float(diff.mean()),
        ci_low=float(np.quantile(boot, alpha)),
        ci_high=float(np.quantile(boot, 1 - alpha)),
        confidence=confidence,
    )
