"""The CPU trainers really train a LoRA adapter over the real small model (SmolLM2-135M)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from chimera_core.plugins import ADAPTER_WEIGHTS, TARGET_MODULES
from chimera_plugins.algorithms.grpo_trainer import train_grpo
from chimera_plugins.algorithms.options import GRPOOptions, SFTOptions
from chimera_plugins.algorithms.sft_trainer import to_prompt_completion, train_sft


def _trained_modules(adapter_dir: Path) -> list[str]:
    """Keys of the adapter's lora_B weights that training moved off their zero init."""
    assert not (adapter_dir / "model.safetensors").exists()  # an adapter, not a full model
    weights = load_file(str(adapter_dir / ADAPTER_WEIGHTS))
    return [k for k, w in weights.items() if "lora_B" in k and bool(w.abs().sum() > 0)]


def test_prompt_completion_split_keeps_only_assistant_turns_as_targets() -> None:
    conv = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a2"},
    ]
    examples = to_prompt_completion([conv])
    assert [e["completion"][0]["content"] for e in examples] == ["a1", "a2"]
    assert examples[1]["prompt"] == conv[:4]


@pytest.mark.slow
def test_sft_lowers_loss_and_trains_an_attention_adapter(
    base_model_dir: Path, tmp_path: Path
) -> None:
    convs = [
        [
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": f"Does drug {i} lower blood pressure?"},
            {
                "role": "assistant",
                "content": json.dumps({"hypothesis": f"Drug {i} lowers blood pressure"}),
            },
        ]
        for i in range(6)
    ]
    cfg = SFTOptions(lora_r=4, lora_alpha=8, max_steps=4, batch_size=2, grad_accum=1,
                    max_seq_length=128, use_unsloth="never", learning_rate=1e-3)  # fmt: skip
    result = train_sft(base_model_dir, convs, cfg, tmp_path / "sft")
    assert result.steps == 4 and result.backend == "trl"
    assert result.losses[-1] < result.losses[0]
    trained = _trained_modules(tmp_path / "sft")
    assert trained and all(any(p in k for p in TARGET_MODULES) for k in trained)


@pytest.mark.slow
def test_grpo_trains_an_adapter(base_model_dir: Path, tmp_path: Path) -> None:
    examples = [
        {
            "prompt": [{"role": "user", "content": f"Name a test for drug {i} in JSON."}],
            "task_id": str(i),
        }
        for i in range(2)
    ]

    def reward(prompts: list, completions: list, **_: object) -> list[float]:  # type: ignore[type-arg]
        # Varied rewards give non-zero group advantages, hence a real gradient.
        return [min(1.0, len(str(c)) / 80) for c in completions]

    cfg = GRPOOptions(total_steps=1, rollout_n=2, train_batch_size=2, max_response_length=12,
                    learning_rate=1e-3, lora_r=4)  # fmt: skip
    result = train_grpo(base_model_dir, examples, reward, cfg, tmp_path / "grpo")
    assert result.steps == 1 and len(result.mean_rewards) == 1
    assert _trained_modules(tmp_path / "grpo")
