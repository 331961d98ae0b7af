"""Stage ``ppo``: RL of the trainable senior alias (algorithm: stages.ppo; grpo or verl)."""

from __future__ import annotations

from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_stage import run_training_stage, trained_alias


def run(ctx: StageContext) -> StageResult:
    """Train the trainable senior alias with the configured algorithm (``grpo`` on CPU)."""
    return run_training_stage(ctx, trained_alias(ctx, "senior", trainable_only=True), llm=True)
