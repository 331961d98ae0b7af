"""Algorithm ``sft``: fine-tune the junior model on the conversations of successful rollouts."""

from __future__ import annotations

from typing import Any

import numpy as np

from chimera_core.data.training_data import SFTExample
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_inputs import (
    gathered_training_data,
    train_and_register,
    trained_alias,
)


def select_successful(
    examples: list[SFTExample], threshold: float, top_quantile: float | None
) -> tuple[list[SFTExample], float]:
    """Keep examples whose rollout reward passes the threshold (or is in the top quantile)."""
    if not examples:
        return [], threshold
    if top_quantile is not None:
        rewards = np.asarray([e.reward for e in examples])
        threshold = float(np.quantile(rewards, 1.0 - top_quantile))
    return [e for e in examples if e.reward >= threshold], threshold


class SFTAlgorithm:
    """LoRA SFT (TRL on CPU, unsloth on CUDA) of the juniors' alias, registered as an adapter."""

    name = "sft"

    def train(self, ctx: StageContext) -> StageResult:
        """Select, train the adapter, register; no successful traces means no new version."""
        from chimera_core.training.sft import train_sft

        cfg = ctx.config.stages.sft
        data = gathered_training_data(ctx)
        kept, threshold = select_successful(data.sft, cfg.reward_threshold, cfg.top_quantile)
        metrics: dict[str, Any] = {
            "junior_examples": len(data.sft),
            "kept": len(kept),
            "threshold": round(threshold, 4),
            "rollouts": data.n_rollouts,
        }
        ctx.log.info(
            "kept %d of %d junior conversations (reward >= %.3f)",
            len(kept),
            len(data.sft),
            threshold,
        )
        ctx.store.put_bytes(
            ctx.key("sft_data.jsonl"),
            b"".join(e.model_dump_json().encode() + b"\n" for e in kept),
        )
        if not kept:
            metrics["skipped"] = "no junior conversation passed the reward threshold"
            return StageResult(stage=ctx.stage, run_id=ctx.run_id, metrics=metrics)
        return train_and_register(
            ctx,
            trained_alias(ctx, "junior"),
            lambda base, parent, out: train_sft(
                base, [e.messages for e in kept], cfg, out, parent_adapter=parent
            ),
            examples=kept,
            stage_config=cfg,
            metrics=metrics,
            reported={"backend", "steps", "losses", "seconds_per_step"},
        )
