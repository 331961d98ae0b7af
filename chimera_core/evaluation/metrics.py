"""Metrics over a list of rollouts, and paired comparison of two model sets on the same tasks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field
from sklearn.metrics import confusion_matrix

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


def _codes(labels: Sequence[str]) -> np.ndarray:
    # yes/no/maybe -> 0/1/2; anything else (no answer, an unknown label) -> 3, which is never
    # a class of its own but still counts as a wrong prediction of the classes it was given.
    return np.asarray([LABELS.index(x) if x in LABELS else len(LABELS) for x in labels], dtype=int)


def macro_f1_rows(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Macro-F1 of each row of label codes (``_codes``), over the labels present in its truth.

    The same value as sklearn's ``f1_score(average="macro", labels=present, zero_division=0)``,
    vectorised over rows so a bootstrap can score thousands of resamples at once.
    """
    n_labels = len(LABELS)
    k = n_labels + 1
    rows = truth.shape[0]
    cells = (np.arange(rows)[:, None] * k * k + truth * k + pred).ravel()
    counts = np.bincount(cells, minlength=rows * k * k).reshape(rows, k, k)  # row, truth, pred
    true_pos = np.diagonal(counts, axis1=1, axis2=2)[:, :n_labels]
    support = counts.sum(axis=2)[:, :n_labels]
    predicted = counts.sum(axis=1)[:, :n_labels]
    denom = support + predicted
    f1 = np.divide(2 * true_pos, denom, out=np.zeros(denom.shape), where=denom > 0)
    present = support > 0
    return np.asarray((f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1))


def _macro_f1(truth: Sequence[str], pred: Sequence[str]) -> float:
    if not truth:
        return 0.0
    return float(macro_f1_rows(_codes(truth)[None], _codes(pred)[None])[0])


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
        macro_f1=_macro_f1(truth, pred),
        majority_label=majority,
        majority_accuracy=_mean([float(t == majority) for t in truth]),
        majority_macro_f1=_macro_f1(truth, [majority] * n),
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
# Statistics of a whole set of tasks, not means of per-rollout values: the bootstrap recomputes
# them on every resample of the tasks.
RESAMPLED = ("macro_f1",)
COMPARED = (*PER_ROLLOUT, *RESAMPLED)
# ``reward:<name>`` compares one reward component (what the judge adds, what the label adds).
COMPONENT = "reward:"


def _per_rollout(metric: str) -> Callable[[RolloutRecord], float]:
    """The per-rollout value of a metric; a component is NaN where it did not score."""
    if metric.startswith(COMPONENT):
        name = metric.removeprefix(COMPONENT)
        return lambda r: r.reward_components.get(name, float("nan"))
    return PER_ROLLOUT[metric]


def _pairs(
    baseline: Sequence[RolloutRecord], challenger: Sequence[RolloutRecord]
) -> list[tuple[RolloutRecord, RolloutRecord]]:
    base_by_task = {r.task_id: r for r in baseline}
    return [(base_by_task[r.task_id], r) for r in challenger if r.task_id in base_by_task]


def _comparison(
    metric: str,
    n_pairs: int,
    values: tuple[float, float, float],
    boot: np.ndarray,
    confidence: float,
) -> PairedComparison:
    # values: baseline, challenger and delta on all pairs; boot: the resampled deltas.
    alpha = (1 - confidence) / 2
    baseline, challenger, delta = values
    return PairedComparison(
        metric=metric,
        n_pairs=n_pairs,
        baseline=baseline,
        challenger=challenger,
        delta=delta,
        ci_low=float(np.quantile(boot, alpha)),
        ci_high=float(np.quantile(boot, 1 - alpha)),
        confidence=confidence,
    )


def _no_pairs(metric: str, confidence: float) -> PairedComparison:
    return PairedComparison(
        metric=metric, n_pairs=0, baseline=0, challenger=0, delta=0, ci_low=0, ci_high=0,
        confidence=confidence,
    )  # fmt: skip


def paired_bootstrap(
    baseline: Sequence[RolloutRecord],
    challenger: Sequence[RolloutRecord],
    metric: str = "mean_reward",
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Bootstrap the mean per-task difference over tasks both sets ran.

    A ``RESAMPLED`` metric goes to ``paired_bootstrap_resampled``; a reward component
    (``reward:<name>``) pairs only the tasks where both rollouts were scored by it.
    """
    if metric in RESAMPLED:
        return paired_bootstrap_resampled(baseline, challenger, metric, samples, confidence, seed)
    value = _per_rollout(metric)
    both = [(value(b), value(c)) for b, c in _pairs(baseline, challenger)]
    scored = np.asarray([v for v in both if not np.isnan(v).any()], dtype=float).reshape(-1, 2)
    if not len(scored):
        return _no_pairs(metric, confidence)
    b, c = scored[:, 0], scored[:, 1]
    diff = c - b
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(samples, len(diff)))
    values = (float(b.mean()), float(c.mean()), float(diff.mean()))
    return _comparison(metric, len(diff), values, diff[idx].mean(axis=1), confidence)


def paired_bootstrap_resampled(
    baseline: Sequence[RolloutRecord],
    challenger: Sequence[RolloutRecord],
    metric: str = "macro_f1",
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Bootstrap a set-level statistic (macro-F1): resample tasks, recompute it on both sets."""
    if metric not in RESAMPLED:
        raise ValueError(f"{metric!r} is not a resampled metric ({', '.join(RESAMPLED)})")
    pairs = _pairs(baseline, challenger)
    if not pairs:
        return _no_pairs(metric, confidence)
    truth, base_pred = (_codes(x) for x in _answers([p[0] for p in pairs]))
    chal_pred = _codes(_answers([p[1] for p in pairs])[1])
    idx = np.random.default_rng(seed).integers(0, len(pairs), size=(samples, len(pairs)))
    boot = macro_f1_rows(truth[idx], chal_pred[idx]) - macro_f1_rows(truth[idx], base_pred[idx])
    base = float(macro_f1_rows(truth[None], base_pred[None])[0])
    chal = float(macro_f1_rows(truth[None], chal_pred[None])[0])
    return _comparison(metric, len(pairs), (base, chal, chal - base), boot, confidence)
