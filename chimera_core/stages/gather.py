"""Stage ``gather``: the current champion models run training tasks; traces and rewards stored."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from chimera_core.data.rollouts import RolloutRecord
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ChimeraError
from chimera_core.evaluation.metrics import compute_metrics
from chimera_core.rollouts.runner import run_rollouts
from chimera_core.serving.model_sets import ModelServing, bandit_policy_dir
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_stage import adapt_rollouts
from chimera_core.tracking import Tracker


def split_tasks(tasks: list[ResearchTask], split: str, n: int) -> list[ResearchTask]:
    """The first ``n`` tasks of a split (source order, reproducible)."""
    chosen = [t for t in tasks if t.split == split][:n]
    if not chosen:
        splits = sorted({t.split for t in tasks})
        raise ChimeraError(f"no tasks in split {split!r} (dataset has: {', '.join(splits)})")
    return chosen


def served_rollouts(
    ctx: StageContext,
    tasks: list[ResearchTask],
    model_set: dict[str, str],
    *,
    prefix: str,
    tracker: Tracker,
    explore: bool,
    policy: tuple[str | None, str | None] = (None, None),
) -> tuple[list[RolloutRecord], float | None]:
    """Run tasks on the model set's endpoints; return the records and the prefix-cache hit rate.

    A model server that died and was restarted fails the rollouts in flight; they run once more
    on the restarted server. A server gone for good is reported as such (exit code 1).
    """
    serving = ctx.model_serving()
    endpoints = serving.endpoints(model_set)
    server = serving.server
    restarts = server.restarts if server else 0
    cache_before = _prefix_cache(serving)

    def run_once() -> list[RolloutRecord]:
        return run_rollouts(
            ctx.config,
            tasks,
            store=ctx.store,
            run_id=ctx.run_id,
            stage=ctx.stage,
            prefix=prefix,
            endpoints=endpoints,
            explore=explore,
            tracker=tracker,
            model_set=model_set,
            bandit_dir=policy[0],
            bandit_version=policy[1],
        )

    records = run_once()
    failed = len(tasks) - sum(r.status == "succeeded" for r in records)
    if server is not None:
        server.settle()  # a death in the last instants is handled (or reported) first
        if server.restarts > restarts and failed:
            ctx.log.warning(
                "the model server was restarted during the stage; running the %d failed "
                "rollout(s) again",
                failed,
            )
            records = run_once()
            server.settle()
    cache_after = _prefix_cache(serving)
    hit_rate = None
    restarted = server is not None and server.restarts > restarts  # counters were reset
    if cache_before and cache_after and cache_after[0] > cache_before[0] and not restarted:
        hit_rate = (cache_after[1] - cache_before[1]) / (cache_after[0] - cache_before[0])
        ctx.log.info("prefix cache: %.1f%% of prompt tokens were cached", 100 * hit_rate)
    return records, hit_rate


def _prefix_cache(serving: ModelServing) -> tuple[float, float] | None:
    """The server's (queried, hit) prefix-cache token counters, None if unavailable."""
    if serving.server is None:
        return None
    try:
        return serving.server.prefix_cache()
    except httpx.HTTPError:
        return None


def failure_counts(records: list[RolloutRecord]) -> dict[str, dict[str, int]]:
    """Failures per reward (rollouts) and per tool (calls), for the result and the console.

    A broken plugin thus shows in the stage's summary, not only in the rollout logs.
    """
    rewards = Counter(name for r in records for name in r.reward_failed)
    tools: Counter[str] = Counter()
    for r in records:
        tools.update(r.tool_failures)
    return {
        "reward_failures": dict(sorted(rewards.items())),
        "tool_failures": dict(sorted(tools.items())),
    }


def run(ctx: StageContext) -> StageResult:
    """Run the lab with the champion models over the training tasks, exploring as it goes."""
    cfg = ctx.config.stages.gather
    tasks = split_tasks(ctx.tasks(), cfg.split, cfg.n_tasks)
    registry = ctx.models
    model_set = registry.model_set("champion", ctx.config.models)
    prefix = ctx.key("rollouts")
    metrics_path = ctx.config.tracking.wandb_dir.parent / "metrics" / ctx.run_id / "gather.jsonl"
    with Tracker(ctx.config.tracking, ctx.run_id, ctx.stage, metrics_path) as tracker:
        records, hit_rate = served_rollouts(
            ctx,
            tasks,
            model_set,
            prefix=prefix,
            tracker=tracker,
            explore=True,
            policy=bandit_policy_dir(registry, "champion"),
        )
        summary = compute_metrics(records)
        tracker.summary({"gather/mean_reward": summary.mean_reward})
    if metrics_path.is_file():
        ctx.store.put_file(ctx.key("metrics.jsonl"), metrics_path)
    metrics: dict[str, Any] = summary.model_dump(
        include={
            "n",
            "success_rate",
            "mean_reward",
            "decision_alignment",
            "exact_accuracy",
            "mean_turns",
        }
    )
    metrics.update(failure_counts(records))
    for kind in ("reward", "tool"):
        if metrics[f"{kind}_failures"]:
            ctx.log.warning("%s failures: %s", kind, metrics[f"{kind}_failures"])
    metrics["prefix_cache_hit_rate"] = None if hit_rate is None else round(hit_rate, 4)
    # What the trainers will get, so a gather that yields nothing for a tier is seen at once.
    metrics["adapter"] = adapt_rollouts(ctx, prefix).counts()
    ctx.log.info("adapter output: %s", metrics["adapter"])
    failed = [r for r in records if r.status == "failed"]
    metrics["failed_tasks"] = [r.task_id for r in failed]
    metrics["n_succeeded"] = len(records) - len(failed)
    metrics["n_failed"] = len(failed) + len(tasks) - len(records)  # no record: runner died
    ctx.log.info("%d rollouts succeeded, %d failed", metrics["n_succeeded"], metrics["n_failed"])
    if metrics["n_failed"] > cfg.max_failure_rate * len(tasks):
        # run_rollouts already failed if the store lost records; these runners died.
        no_record = len(tasks) - len(records)
        why = [f"first error: {failed[0].error}"] if failed else []
        if no_record:
            why.append(f"{no_record} rollout(s) left no record: their runner died")
        kept = (
            f"the {len(records)} record(s) written are kept in {ctx.store.uri(prefix)}"
            if records
            else "no record was written"
        )
        raise ChimeraError(
            f"{metrics['n_failed']} of {len(tasks)} rollouts failed, more than "
            f"stages.gather.max_failure_rate={cfg.max_failure_rate} ({'; '.join(why)}); "
            f"{kept}; rerun the same run id to retry the failed rollouts"
        )
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={"rollouts": ctx.store.uri(prefix), "rollouts_key": prefix},
        metrics=metrics,
    )
