"""Stage ``promote``: the challenger becomes champion only if it clearly beat the champion.

"Clearly" means: on ``stages.evaluate.primary_metric`` the paired delta exceeds
``promote_margin`` and the bootstrap interval excludes zero, and on none of
``stages.evaluate.guard_metrics`` the paired delta is below zero. Otherwise the trained versions
stay registered as candidates, and the result says why.
"""

from __future__ import annotations

from typing import Any

from chimera_core.stages.base import StageContext, StageResult


def _interval(c: dict[str, Any]) -> str:
    return f"delta {c['delta']:+.3f}, 95% CI [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"


def guard_failures(guards: list[str], comparisons: dict[str, dict[str, Any]]) -> list[str]:
    """One line per guard metric that fell (paired delta below zero) or was not compared."""
    failures = []
    for metric in guards:
        c = comparisons.get(metric)
        if c is None:
            # An evaluation from before the guard existed: no evidence that it held.
            failures.append(f"guard {metric} was not compared (run evaluate again)")
        elif c["delta"] < 0:
            failures.append(f"guard {metric} fell: {_interval(c)}; a guard may not drop")
    return failures


def run(ctx: StageContext) -> StageResult:
    """Promote every alias whose challenger version differs, or explain why not."""
    cfg = ctx.config.stages.evaluate
    evaluation = ctx.result_of("evaluate").metrics
    sets = evaluation["sets"]
    comparisons = {c["metric"]: c for c in evaluation["comparisons"]}
    comparison = comparisons.get(cfg.primary_metric)
    if "challenger" not in sets or comparison is None:
        reason = "no challenger was evaluated (nothing new was trained)"
        return StageResult(
            stage=ctx.stage, run_id=ctx.run_id, metrics={"promoted": {}, "reason": reason}
        )
    delta, low = comparison["delta"], comparison["ci_low"]
    changed = {
        alias: version
        for alias, version in sets["challenger"].items()
        if version != sets[evaluation["baseline"]].get(alias)
    }
    failures = guard_failures(cfg.guard_metrics, comparisons)
    if not (delta > cfg.promote_margin and low > 0):
        failures.insert(
            0,
            f"{cfg.primary_metric} {_interval(comparison)}; needs delta > {cfg.promote_margin} "
            "with the interval above zero",
        )
    guards = {m: comparisons[m]["delta"] for m in cfg.guard_metrics if m in comparisons}
    if not failures:
        registry = ctx.models
        reason = (
            f"{cfg.primary_metric} improved by {delta:+.3f} "
            f"(95% CI [{low:+.3f}, {comparison['ci_high']:+.3f}], margin {cfg.promote_margin})"
        )
        if guards:
            reason += "; guards held: " + ", ".join(f"{m} {d:+.3f}" for m, d in guards.items())
        for alias, version in changed.items():
            registry.promote(alias, version, reason)
        promoted = changed
    else:
        reason = "kept as candidate: " + "; ".join(failures)
        promoted = {}
    ctx.log.info(reason)
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={alias: version for alias, version in promoted.items()},
        metrics={"promoted": promoted, "candidates": changed, "guards": guards, "reason": reason},
    )
