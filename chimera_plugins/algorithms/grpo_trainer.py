"""GRPO with LoRA on CPU (TRL): the senior roles' RL path when no GPU/VERL is available.

Prompts are the senior roles' real prompts harvested from gathered traces; each step samples
``num_generations`` completions per prompt, scores them with a reward function built from the
reward plugins, and updates the LoRA with group-relative advantages. The result is a PEFT
adapter directory over the base (what vLLM serves as a LoRA module); a parent adapter is continued.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from chimera_core.plugins import ChimeraError
from chimera_plugins.algorithms.hf_progress import RichProgressCallback, quiet_trainer
from chimera_plugins.algorithms.lora import (
    LoraSpec,
    TrainedModel,
    load_for_training,
    save_adapter,
)

if TYPE_CHECKING:
    from chimera_plugins.algorithms.options import GRPOOptions

RewardFn = Callable[..., list[float]]
"""TRL reward function: ``fn(prompts, completions, **dataset_columns) -> list[float]``."""


class GRPOResult(TrainedModel):
    """What one GRPO run did."""

    n_prompts: int
    steps: int
    mean_rewards: list[float]
    losses: list[float]
    seconds: float
    seconds_per_step: float


def train_grpo(
    base_dir: Path,
    examples: Sequence[dict[str, Any]],
    reward_fn: RewardFn,
    cfg: GRPOOptions,
    output_dir: Path,
    *,
    parent_adapter: Path | None = None,
    seed: int = 0,
) -> GRPOResult:
    """Train a LoRA with GRPO on ``examples`` (each has ``prompt`` messages plus columns).

    With ``parent_adapter`` that adapter is trained further, at its own rank (a different
    ``cfg.lora_r`` is logged, not applied); otherwise a fresh rank-``cfg.lora_r`` adapter.
    """
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if not examples:
        raise ChimeraError("GRPO got no senior prompts (gather produced no senior turns?)")
    # The trainer gets a PeftModel (no peft_config): TRL trains it as is, which is the only way
    # to continue a parent adapter, and for a fresh one it is what peft_config would build.
    model, tokenizer = load_for_training(
        base_dir, parent_adapter, LoraSpec(cfg.lora_r, 2 * cfg.lora_r)
    )
    n_gen = max(2, cfg.rollout_n)
    args = GRPOConfig(
        output_dir=str(output_dir.parent / f".{output_dir.name}.trainer"),
        max_steps=cfg.total_steps,
        learning_rate=cfg.learning_rate,
        num_generations=n_gen,
        # One prompt group per step keeps a CPU step bounded; batch = generations of one prompt.
        per_device_train_batch_size=n_gen,
        gradient_accumulation_steps=max(1, cfg.train_batch_size // n_gen),
        max_completion_length=cfg.max_response_length,
        temperature=0.9,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=seed,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=cast(Any, reward_fn),
        args=args,
        train_dataset=Dataset.from_list(list(examples)),
        processing_class=tokenizer,
    )
    progress = RichProgressCallback("grpo (trl, cpu)")
    quiet_trainer(trainer, progress)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    save_adapter(trainer.model, output_dir)
    steps = int(trainer.state.global_step)
    result = GRPOResult(
        output_dir=str(output_dir),
        n_prompts=len(examples),
        steps=steps,
        mean_rewards=progress.series("reward"),
        losses=progress.series("loss"),
        seconds=round(seconds, 3),
        seconds_per_step=round(seconds / max(1, steps), 3),
    )
    (output_dir / "chimera_training.json").write_text(json.dumps(result.model_dump(), indent=2))
    return result
