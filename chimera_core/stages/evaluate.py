"""Stage ``evaluate``: champion vs challenger on the same held-out tasks, with a report.

The baseline is the current champion set (the base models on a first run); the challenger is
``stages.evaluate.model_set``: ``candidate`` (the versions this run trained, champion elsewhere),
``champion``, or one registered version id. Both run greedily (no exploration). The report also
states the held-out split, the reward's components, and this run's training curves and costs.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from chimera_core.data.rollouts import RolloutRecord
from chimera_core.errors import ChimeraError
from chimera_core.evaluation.metrics import (
    COMPARED,
    COMPONENT,
    EvalMetrics,
    compute_metrics,
    paired_bootstrap,
)
from chimera_core.evaluation.report import EvalSetup, StageRun, write_report
from chimera_core.model_registry import ModelRegistry
from chimera_core.rollouts.storage import load_records
from chimera_core.serving.model_sets import POLICY_ALIAS, bandit_policy_dir
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.gather import served_rollouts, split_tasks
from chimera_core.tracking import Tracker

# The stages before this one, in pipeline order (chimera_core.stages.STAGES; a test keeps them
# equal), and the tier each training stage trains.
EARLIER_STAGES = ("ingest", "gather", "sft", "ppo", "bandit", "board")
TRAINED_TIERS = {"sft": "junior", "ppo": "senior", "board": "board"}


def challenger_set(
    ctx: StageContext, registry: ModelRegistry, champion: dict[str, str]
) -> dict[str, str]:
    """Alias -> version for the model set under evaluation."""
    choice = ctx.config.stages.evaluate.model_set
    if choice == "base":
        return dict.fromkeys(champion, "base")
    if choice == "champion":
        return dict(champion)
    if choice == "candidate":  # what this run trained, over the champion
        try:
            return registry.model_set(f"run:{ctx.run_id}", champion)
        except ChimeraError:  # the run trained nothing
            return dict(champion)
    owners = [a for a in champion if choice in registry.versions(a)]
    if not owners:
        raise ChimeraError(
            f"stages.evaluate.model_set: no model has version {choice!r} "
            "(expected candidate, champion, base or a registered version id)"
        )
    return {**champion, owners[0]: choice}


def held_out_overlap(
    registry: ModelRegistry, sets: dict[str, dict[str, str]], task_ids: set[str]
) -> list[str]:
    """One line per set member whose lineage trained on any of the held-out tasks."""
    problems = []
    for label, model_set in sets.items():
        for alias, version in model_set.items():
            trained = registry.lineage_tasks(alias, version)
            overlap = sorted(task_ids & set(trained))
            if overlap:
                versions = sorted({trained[t] for t in overlap})
                problems.append(
                    f"{label} {alias}={version}: {len(overlap)} held-out task(s) were training "
                    f"tasks of {', '.join(versions)} (e.g. {', '.join(overlap[:5])})"
                )
    return problems


def earlier_stages(ctx: StageContext) -> list[StageRun]:
    """This run's finished stages before evaluate: their cost, and what training recorded."""
    runs = []
    for stage in EARLIER_STAGES:
        if not ctx.has_result(stage):
            continue
        result = ctx.result_of(stage)
        tier = TRAINED_TIERS.get(stage)
        runs.append(
            StageRun(
                stage=stage,
                seconds=result.seconds,
                peak_rss_mb=result.peak_rss_mb,
                tier=tier,
                alias=result.outputs.get("alias"),
                metrics=result.metrics if tier else {},
            )
        )
    return runs


def _evaluate_set(
    ctx: StageContext,
    registry: ModelRegistry,
    label: str,
    model_set: dict[str, str],
    tasks: list[Any],
) -> list[RolloutRecord]:
    policy_dir, policy_version = bandit_policy_dir(registry, model_set.get(POLICY_ALIAS, "base"))
    metrics_path = (
        ctx.config.tracking.wandb_dir.parent / "metrics" / ctx.run_id / f"evaluate-{label}.jsonl"
    )
    with Tracker(ctx.config.tracking, ctx.run_id, f"{ctx.stage}-{label}", metrics_path) as t:
        records, _ = served_rollouts(
            ctx,
            tasks,
            model_set,  # the records keep the policy's version too; serving skips it
            prefix=ctx.key(label),
            tracker=t,
            explore=False,
            policy=(policy_dir, policy_version),
        )
    return records


def run(ctx: StageContext) -> StageResult:
    """Evaluate baseline and challenger, compare them pairwise, publish the report."""
    cfg = ctx.config.stages.evaluate
    all_tasks = ctx.tasks()  # before any rollout: a run without a dataset fails at once
    tasks = split_tasks(all_tasks, cfg.split, cfg.n_tasks)
    registry = ctx.models
    aliases = [*ctx.config.models, POLICY_ALIAS]
    champion = registry.model_set("champion", aliases)
    challenger = challenger_set(ctx, registry, champion)
    baseline_label = "champion" if any(v != "base" for v in champion.values()) else "base"
    sets = {baseline_label: champion}
    notes: list[str] = []
    if challenger != champion:
        sets["challenger"] = challenger
    else:
        notes.append(
            "the challenger equals the champion (nothing new was trained): one set evaluated"
        )
    if problems := held_out_overlap(registry, sets, {t.id for t in tasks}):
        # Grading a model on tasks it was trained on measures memory, not the lab.
        raise ChimeraError(
            "the held-out tasks overlap what the evaluated models were trained on "
            f"(split {cfg.split!r} of dataset {ctx.dataset_version()}):\n  "
            + "\n  ".join(problems)
            + "\nevaluate on a split disjoint from the training tasks (stages.evaluate.split)"
        )
    records = {label: _evaluate_set(ctx, registry, label, ms, tasks) for label, ms in sets.items()}
    for label, recs in records.items():
        if not any(r.status == "succeeded" for r in recs):
            first = next((r.error for r in recs if r.error), "no record was written")
            raise ChimeraError(
                f"every {label} rollout failed ({first}); see {ctx.store.uri(ctx.key(label))}"
            )
    majority = Counter(t.expected_decision for t in all_tasks if t.split == "train").most_common(1)
    metrics: dict[str, EvalMetrics] = {
        label: compute_metrics(recs, majority[0][0] if majority else None)
        for label, recs in records.items()
    }
    comparisons = []
    if "challenger" in records:
        comparisons = [
            paired_bootstrap(
                records[baseline_label], records["challenger"], m, samples=cfg.bootstrap_samples
            )
            for m in (*COMPARED, *(f"{COMPONENT}{c}" for c in ctx.config.rewards.weights))
        ]
    gathered: list[float] | None = None
    if ctx.has_result("gather"):
        prefix = ctx.result_of("gather").outputs["rollouts_key"]
        gathered = [r.reward or 0.0 for r in load_records(ctx.store, prefix)]
    rewards = ctx.config.rewards
    setup = EvalSetup(
        split=cfg.split,
        dataset_version=ctx.dataset_version(),
        n_tasks=len(tasks),
        n_gathered=None if gathered is None else len(gathered),
        reward_weights=rewards.weights,
        decision_reward=rewards.decision_reward,
        alignment_mode=rewards.alignment_mode,
    )
    with tempfile.TemporaryDirectory() as tmp:
        report = write_report(
            Path(tmp),
            run_id=ctx.run_id,
            metrics=metrics,
            comparisons=comparisons,
            records=records,
            gathered_rewards=gathered or [],
            model_sets=sets,
            notes=notes,
            setup=setup,
            stages=earlier_stages(ctx),
        )
        ctx.store.put_dir(ctx.key("report"), report.parent)
    local_copy = Path(".chimera") / "reports" / ctx.run_id
    ctx.store.get_dir(ctx.key("report"), local_copy)
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={
            "report": ctx.store.uri(ctx.key("report", "report.md")),
            "report_local": str((local_copy / "report.md").resolve()),
            "metrics": ctx.store.uri(ctx.key("report", "metrics.json")),
        },
        metrics={
            "sets": {label: ms for label, ms in sets.items()},
            "baseline": baseline_label,
            **setup.model_dump(include={"split", "dataset_version", "n_tasks", "n_gathered"}),
            **{
                f"{label}.{k}": v
                for label, m in metrics.items()
                for k, v in m.model_dump(
                    include={
                        "mean_reward",
                        "exact_accuracy",
                        "decision_alignment",
                        "success_rate",
                        "macro_f1",
                    }
                ).items()
            },
            "comparisons": [c.model_dump() for c in comparisons],
        },
    )
