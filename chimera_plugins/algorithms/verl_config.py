"""VERL's side of the ``verl`` algorithm: its options, its config, where it saves the adapter.

Light on purpose (pydantic only): the GPU stack is imported by ``verl.py`` when it trains.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from chimera_core.plugins import TARGET_MODULES, ChimeraError
from chimera_plugins.algorithms.options import VERLOptions

REQUIRED_MODULES = ("torch", "verl", "vllm", "hydra", "ray")


def verl_config(
    cfg: VERLOptions,
    model_path: str,
    n_gpus: int,
    run_name: str,
    parent_adapter: str | None = None,
) -> dict[str, Any]:
    """Agent Lightning VERL config from the stage's options.

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


def latest_actor_adapter(root: Path) -> Path:
    """The newest LoRA adapter VERL saved with the actor (global_step_N/actor/lora_adapter)."""
    steps = sorted(
        (p.parent for p in root.glob("global_step_*/actor/lora_adapter/adapter_config.json")),
        key=lambda p: int(p.parts[-3].split("_")[-1]),
    )
    if not steps:
        # verl logs a failed adapter save ("Save LoRA Adapter Error") and carries on.
        raise ChimeraError(
            f"VERL saved no LoRA adapter under {root} (global_step_N/actor/lora_adapter); "
            "see its log for 'Save LoRA Adapter Error', and check trainer.save_freq"
        )
    return steps[-1]
