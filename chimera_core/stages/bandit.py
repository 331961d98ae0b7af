"""Stage ``bandit``: the supervisor's choice policy learns from logged decisions."""

from __future__ import annotations

from chimera_core.serving.model_sets import POLICY_ALIAS
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_stage import run_training_stage


def run(ctx: StageContext) -> StageResult:
    """Train the supervisor policy with the configured algorithm (``bandit`` by default)."""
    return run_training_stage(ctx, POLICY_ALIAS, llm=False)
