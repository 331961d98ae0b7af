"""The VERL path's CPU-side boundary: its config from the profile, and a clear refusal on CPU."""

from __future__ import annotations

import pytest

from chimera_core.config import load_config
from chimera_core.errors import ChimeraError
from chimera_core.plugins import TARGET_MODULES
from chimera_plugins.algorithms.options import VERLOptions
from chimera_plugins.algorithms.verl import VERLAlgorithm
from chimera_plugins.algorithms.verl_config import missing_requirements, verl_config


def test_verl_config_carries_the_gpu_profiles_settings() -> None:
    ppo = VERLOptions.model_validate(load_config("gpu", environ={}).stages.ppo.chosen_options())
    config = verl_config(ppo, "/models/senior", n_gpus=1, run_name="r1")
    assert config["algorithm"]["adv_estimator"] == ppo.adv_estimator == "grpo"
    rollout = config["actor_rollout_ref"]["rollout"]
    assert rollout["name"] == "vllm" and rollout["n"] == ppo.rollout_n
    model = config["actor_rollout_ref"]["model"]
    assert model["path"] == "/models/senior"
    # A LoRA over the base, like the CPU trainers' output (what vLLM serves per alias).
    assert model["lora_rank"] == ppo.lora_r and "lora_adapter_path" not in model
    assert sorted(model["target_modules"]) == sorted(TARGET_MODULES)
    assert rollout["load_format"] == "safetensors"
    continued = verl_config(ppo, "/models/senior", 1, "r2", parent_adapter="/adapters/ppo-r1")
    assert continued["actor_rollout_ref"]["model"]["lora_adapter_path"] == "/adapters/ppo-r1"
    assert config["data"]["train_batch_size"] == ppo.train_batch_size
    assert config["trainer"]["total_training_steps"] == ppo.total_steps
    assert config["trainer"]["n_gpus_per_node"] == 1


def test_verl_on_a_machine_without_the_gpu_stack_says_what_is_missing() -> None:
    missing = missing_requirements()
    if not missing:
        pytest.skip("this machine has the whole GPU stack")
    with pytest.raises(ChimeraError, match="needs a CUDA machine with verl and vLLM; missing"):
        VERLAlgorithm().train(None)  # type: ignore[arg-type]  # fails before touching ctx
