"""Stage ``board``: the trainable board role (the PI) learns from the verifiable decision reward.

Its examples are the PI's own calls, rewarded by ``decision_alignment`` (the label of the
training task), not by the lab's overall reward. The default is rejection-sampling SFT on the
decisions that matched (``stages.board``); GRPO over the same prompts is the alternative.
"""

from __future__ import annotations

from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_stage import run_training_stage, trained_alias


def run(ctx: StageContext) -> StageResult:
    """Train the trainable board alias; skip when no board role is trainable."""
    roles = ctx.config.roles
    if not any(r.tier == "board" and r.trainable for r in roles.values()):
        reason = "no board role is trainable (roles.<name>.trainable)"
        ctx.log.info("nothing trained: %s", reason)
        return StageResult(stage=ctx.stage, run_id=ctx.run_id, metrics={"skipped": reason})
    # The config guarantees no untrained role shares its alias (reference_problems).
    return run_training_stage(ctx, trained_alias(ctx, "board", trainable_only=True), llm=True)
