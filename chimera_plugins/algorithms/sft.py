"""Algorithm ``sft``: fine-tune a role's model on its conversations from successful rollouts.

The juniors learn from rollouts the lab's reward rated well; the PI (stage ``board``) from
decisions that matched the label: rejection-sampling SFT on the verifiable reward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chimera_core.plugins import (
    SFTExample,
    TrainRequest,
    TrainResult,
)
from chimera_plugins.algorithms.digest import data_sha256, require_base
from chimera_plugins.algorithms.options import SFTOptions


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
    """LoRA SFT (TRL on CPU, unsloth on CUDA) of one alias, saved as an adapter."""

    name = "sft"
    options_model = SFTOptions

    def train(self, request: TrainRequest) -> TrainResult:
        """Select, train the adapter; no successful traces means nothing is trained."""
        from chimera_plugins.algorithms.sft_trainer import train_sft

        cfg: SFTOptions = request.options
        data = request.data
        roles = request.roles()
        examples = [e for e in data.sft if e.role in roles]
        kept, threshold = select_successful(examples, cfg.reward_threshold, cfg.top_quantile)
        metrics: dict[str, Any] = {
            "examples": len(examples),
            "kept": len(kept),
            "threshold": round(threshold, 4),
            "rollouts": data.n_rollouts,
        }
        request.log.info(
            "kept %d of %d %s conversations (reward >= %.3f)",
            len(kept),
            len(examples),
            request.alias,
            threshold,
        )
        request.save_artifact(
            "sft_data.jsonl", b"".join(e.model_dump_json().encode() + b"\n" for e in kept)
        )
        if not kept:
            reason = (
                f"no {request.alias} conversation passed the reward threshold"
                if examples
                else f"the traces hold no conversation of {', '.join(sorted(roles))}"
            )
            return TrainResult(skipped=reason, metrics=metrics)
        result = train_sft(
            require_base(request),
            [e.messages for e in kept],
            cfg,
            request.output_dir,
            parent_adapter=request.parent,
        )
        metrics.update(
            result.model_dump(include={"backend", "steps", "losses", "seconds_per_step"})
        )
        return TrainResult(
            output_dir=request.output_dir,
            metrics=metrics,
            data_sha256=data_sha256(kept),
            config={"algorithm": self.name, **cfg.model_dump(mode="json")},
        )
