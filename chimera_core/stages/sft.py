"""Stage ``sft``: the juniors' model learns from successful traces (algorithm: stages.sft)."""

from __future__ import annotations

from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_stage import run_training_stage, trained_alias


def run(ctx: StageContext) -> StageResult:
    """Train the junior alias with the configured algorithm (``sft`` by default)."""
    return run_training_stage(ctx, trained_alias(ctx, "junior"), llm=True)
