"""Algorithm ``sft``: fine-tune the junior model on the conversations of successful rollouts."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from chimera_core.data.training_data import SFTExample
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_inputs import (
    checkpoint_dir,
    data_sha256,
    gathered_training_data,
    model_registry,
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
    """LoRA SFT (TRL on CPU, unsloth on CUDA) of the juniors' alias, registered as a version."""

    name = "sft"

    def train(self, ctx: StageContext) -> StageResult:
        """Select, train, merge, register; no successful traces means no new version."""
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
        alias = trained_alias(ctx, "junior")
        registry = model_registry(ctx)
        parent = registry.champion(alias)
        with tempfile.TemporaryDirectory() as tmp:
            result = train_sft(
                checkpoint_dir(ctx, alias, parent),
                [e.messages for e in kept],
                cfg,
                Path(tmp) / "model",
            )
            version = registry.register(
                alias,
                Path(result.output_dir),
                parent=parent,
                stage=ctx.stage,
                run_id=ctx.run_id,
                data_sha256=data_sha256(list(kept)),
                config=cfg.model_dump(mode="json"),
                metrics=result.model_dump(exclude={"output_dir"}),
            )
        metrics.update(
            result.model_dump(include={"backend", "steps", "losses", "seconds_per_step"})
        )
        return StageResult(
            stage=ctx.stage,
            run_id=ctx.run_id,
            outputs={"model": version.uri, "alias": alias, "version": version.version},
            metrics=metrics,
        )
