"""Stages ``sft``, ``ppo`` and ``bandit``: each runs the algorithm plugin its config names."""

from __future__ import annotations

from chimera_core.stages.base import StageContext, StageResult


def _run_algorithm(ctx: StageContext, algorithm: str) -> StageResult:
    result: StageResult = ctx.registry.algorithm(algorithm).train(ctx)
    return result


def run_sft(ctx: StageContext) -> StageResult:
    """SFT of the juniors on successful traces."""
    return _run_algorithm(ctx, ctx.config.stages.sft.algorithm)


def run_ppo(ctx: StageContext) -> StageResult:
    """RL of the seniors (grpo on CPU, verl on GPU)."""
    return _run_algorithm(ctx, ctx.config.stages.ppo.algorithm)


def run_bandit(ctx: StageContext) -> StageResult:
    """The supervisor's contextual bandit."""
    return _run_algorithm(ctx, ctx.config.stages.bandit.algorithm)
