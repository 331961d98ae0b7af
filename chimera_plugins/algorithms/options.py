"""The options model of each built-in algorithm: what ``stages.<stage>.options`` may hold.

Validated when a command loads the config (unknown keys and bad values are errors naming
``stages.<stage>.options.<key>``). Kept apart from the trainers so that listing the plugins
imports no training library.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chimera_core.plugins import TARGET_MODULES, AlgorithmOptions


class SFTOptions(AlgorithmOptions):
    """Which conversations to keep and how to train the LoRA (TRL's SFTConfig underneath)."""

    reward_threshold: float = Field(
        0.8, ge=0.0, le=1.0, description="Keep rollouts at least this good."
    )
    top_quantile: float | None = Field(
        None, gt=0.0, le=1.0, description="Keep the best fraction instead of a fixed threshold."
    )
    lora_r: int = Field(16, ge=1, description="Rank of a fresh adapter (a parent keeps its own).")
    lora_alpha: int = Field(16, ge=1)
    target_modules: list[str] = Field(default_factory=lambda: list(TARGET_MODULES))
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(4, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    max_steps: int = Field(10, ge=1)
    max_seq_length: int = Field(2048, ge=64, description="Longer examples keep their end.")
    use_unsloth: Literal["auto", "never", "always"] = "auto"


class GRPOOptions(AlgorithmOptions):
    """GRPO on LoRA (TRL's GRPOConfig underneath), sized for a CPU."""

    train_batch_size: int = Field(4, ge=1, description="Completions per optimizer step.")
    max_prompt_length: int = Field(4096, ge=16)
    max_response_length: int = Field(2048, ge=8)
    rollout_n: int = Field(2, ge=1, description="Completions per prompt (at least 2 are drawn).")
    learning_rate: float = Field(1e-6, gt=0)
    total_steps: int = Field(10, ge=1)
    lora_r: int = Field(16, ge=1, description="Rank of a fresh adapter (a parent keeps its own).")
    role_rewards: dict[str, str] = Field(
        default_factory=lambda: {
            "ProtocolDesigner": "protocol_rubric",
            "HypothesisRefiner": "hypothesis_grounding",
        },
        description="Role -> the reward plugin that scores its completions.",
    )
    schema_weight: float = Field(
        0.3, ge=0.0, le=1.0, description="What a parseable answer is worth on its own."
    )


class BanditOptions(AlgorithmOptions):
    """A linear epsilon-greedy policy over hashed words of the goal and hypothesis."""

    n_features: int = Field(2**12, ge=16, description="Hashing vectorizer width.")
    epsilon: float = Field(0.2, ge=0.0, le=1.0, description="Exploration rate of the policy.")
    l2: float = Field(1e-3, ge=0.0, description="Ridge penalty.")


class VERLOptions(AlgorithmOptions):
    """Online GRPO/PPO through Agent Lightning's VERL (its trainer config underneath)."""

    adv_estimator: str = Field("grpo", description="VERL's algorithm.adv_estimator.")
    train_batch_size: int = Field(4, ge=1)
    max_prompt_length: int = Field(4096, ge=16)
    max_response_length: int = Field(2048, ge=8)
    rollout_n: int = Field(2, ge=1, description="Rollouts per prompt.")
    gpu_memory_utilization: float = Field(0.6, gt=0.0, le=1.0, description="VERL's vLLM share.")
    ppo_mini_batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(1e-6, gt=0)
    epochs: int = Field(2, ge=1)
    total_steps: int = Field(10, ge=1)
    test_freq: int = Field(5, ge=1)
    save_freq: int = Field(5, ge=1)
    lora_r: int = Field(16, ge=1)
