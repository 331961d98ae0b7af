"""Algorithm ``verl``: online GRPO/PPO of the senior roles with Agent Lightning's VERL (GPU).

VERL serves the policy with vLLM, runs the lab's rollouts through the LLM proxy, and updates
a LoRA adapter between batches: the champion's adapter when there is one (verl's
``lora_adapter_path``), else a fresh one. The version registered is the adapter VERL saves
(``global_step_N/actor/lora_adapter``), like the CPU trainers' output. It needs CUDA and the
``gpu`` extra (verl 0.6, vLLM, hydra); without them the stage stops with a clear message instead
of failing deep inside Ray.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from chimera_core.config.models import PPOConfig
from chimera_core.errors import ChimeraError
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.training.checkpoint import TARGET_MODULES

REQUIRED_MODULES = ("torch", "verl", "vllm", "hydra", "ray")


def verl_config(
    cfg: PPOConfig,
    model_path: str,
    n_gpus: int,
    run_name: str,
    parent_adapter: str | None = None,
) -> dict[str, Any]:
    """Agent Lightning VERL config from the profile's PPO settings (the seed spec's values).

    LoRA training over the base at ``model_path``, continuing ``parent_adapter`` when given
    (verl then takes the rank from the adapter, as the CPU trainers do).
    """
    model: dict[str, Any] = {
        "path": model_path,
        "use_remove_padding": True,
        "enable_gradient_checkpointing": True,
        "lora_rank": cfg.lora_r,
        "lora_alpha": 2 * cfg.lora_r,
        "target_modules": list(TARGET_MODULES),
    }
    if parent_adapter is not None:
        model["lora_adapter_path"] = parent_adapter
    return {
        "algorithm": {"adv_estimator": cfg.adv_estimator, "use_kl_in_reward": False},
        "data": {
            "train_batch_size": cfg.train_batch_size,
            "max_prompt_length": cfg.max_prompt_length,
            "max_response_length": cfg.max_response_length,
        },
        "actor_rollout_ref": {
            "rollout": {
                "name": "vllm",
                "n": cfg.rollout_n,
                "tensor_model_parallel_size": 1,
                "gpu_memory_utilization": cfg.gpu_memory_utilization,
                "multi_turn": {"format": "hermes"},
                # verl's LoRA needs vLLM to load the base from safetensors (docs/advance/ppo_lora).
                "load_format": "safetensors",
            },
            "actor": {
                "ppo_mini_batch_size": cfg.ppo_mini_batch_size,
                "ppo_micro_batch_size_per_gpu": 1,
                "optim": {"lr": cfg.learning_rate},
                "use_kl_loss": False,
                "fsdp_config": {"param_offload": False, "optimizer_offload": False},
            },
            "ref": {"fsdp_config": {"param_offload": True}, "log_prob_micro_batch_size_per_gpu": 1},
            "model": model,
        },
        "trainer": {
            "n_gpus_per_node": n_gpus,
            "nnodes": 1,
            "total_epochs": cfg.epochs,
            "total_training_steps": cfg.total_steps,
            "save_freq": cfg.save_freq,
            "test_freq": cfg.test_freq,
            "val_before_train": False,
            "logger": ["console"],
            "project_name": "chimera",
            "experiment_name": run_name,
        },
    }


def missing_requirements() -> list[str]:
    """What this machine lacks for VERL (CUDA, modules)."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    if "torch" not in missing:
        import torch

        if not torch.cuda.is_available():
            missing.append("CUDA")
    return missing


class VERLAlgorithm:
    """Online RL of the trainable alias through Agent Lightning's VERL."""

    name = "verl"

    def train(self, ctx: StageContext) -> StageResult:
        """Check the GPU stack, then run agl.VERL over the training tasks."""
        if missing := missing_requirements():
            raise ChimeraError(
                f"stages.ppo.algorithm 'verl' needs a CUDA machine with verl and vLLM; missing: "
                f"{', '.join(missing)}. The gpu extra brings vLLM but not verl, whose releases "
                "do not install beside our transformers (see pyproject.toml): run this stage in "
                "the VERL worker image (docker/verl-worker.Dockerfile, pins in "
                "constraints-verl.txt), or use algorithm 'grpo' (the local profile does)."
            )
        from chimera_plugins.algorithms.verl_run import run_verl

        return run_verl(ctx)
