"""Stage ``promote``: the challenger becomes champion only if it clearly beat the champion.

"Clearly" means: on ``stages.evaluate.primary_metric`` the paired delta exceeds
``promote_margin`` and the bootstrap interval excludes zero. Otherwise the trained versions stay
registered as candidates, and the result says why.
"""

from __future__ import annotations

from chimera_core.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    """Promote every alias whose challenger version differs, or explain why not."""
    cfg = ctx.config.stages.evaluate
    evaluation = ctx.result_of("evaluate").metrics
    sets = evaluation["sets"]
    comparison = next(
        (c for c in evaluation["comparisons"] if c["metric"] == cfg.primary_metric), None
    )
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
    if delta > cfg.promote_margin and low > 0:
        registry = ctx.models
        reason = (
            f"{cfg.primary_metric} improved by {delta:+.3f} "
            f"(95% CI [{low:+.3f}, {comparison['ci_high']:+.3f}], margin {cfg.promote_margin})"
        )
        for alias, version in changed.items():
            registry.promote(alias, version, reason)
        promoted = changed
    else:
        reason = (
            f"kept as candidate: {cfg.primary_metric} delta {delta:+.3f}, 95% CI "
            f"[{low:+.3f}, {comparison['ci_high']:+.3f}]; needs delta > {cfg.promote_margin} "
            "with the interval above zero"
        )
        promoted = {}
    ctx.log.info(reason)
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={alias: version for alias, version in promoted.items()},
        metrics={"promoted": promoted, "candidates": changed, "reason": reason},
    )
