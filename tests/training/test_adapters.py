"""Trainers save one LoRA adapter over the base, continue a parent's, and merge for export.

On a tiny random Llama, so each runs in seconds; the real-model runs are in test_trainers.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from chimera_core.errors import ChimeraError
from chimera_core.serving.manifest import structure_problems
from chimera_core.training.checkpoint import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    TARGET_MODULES,
    adapter_rank,
    merge_adapter,
)
from chimera_plugins.algorithms.grpo_trainer import train_grpo
from chimera_plugins.algorithms.options import GRPOOptions, SFTOptions
from chimera_plugins.algorithms.sft_trainer import train_sft
from tests.tiny_llama import random_adapter

CONVS = [
    [
        {"role": "user", "content": f"Does drug {i} lower blood pressure?"},
        {"role": "assistant", "content": json.dumps({"hypothesis": f"Drug {i} lowers it"})},
    ]
    for i in range(4)
]


def _sft_config(lora_r: int, learning_rate: float) -> SFTOptions:
    return SFTOptions(lora_r=lora_r, lora_alpha=2 * lora_r, max_steps=2, batch_size=2,
                     grad_accum=1, max_seq_length=128, use_unsloth="never",
                     learning_rate=learning_rate)  # fmt: skip


def _adapter(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / ADAPTER_WEIGHTS))


@pytest.fixture(scope="module")
def sft_adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh rank-4 adapter trained by SFT on the tiny model."""
    out = tmp_path_factory.mktemp("sft") / "adapter"
    result = train_sft(tiny_llama_dir, CONVS, _sft_config(4, 1e-2), out)
    assert result.steps == 2 and result.output_dir == str(out)
    return out


def test_sft_saves_a_trained_vllm_servable_adapter_and_no_base_weights(sft_adapter: Path) -> None:
    assert sorted(p.name for p in sft_adapter.iterdir()) == [
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
        "chimera_training.json",
    ]
    config = json.loads((sft_adapter / ADAPTER_CONFIG).read_text())
    assert config["r"] == 4 and config["peft_type"] == "LORA"
    assert sorted(config["target_modules"]) == sorted(TARGET_MODULES)
    assert not config["modules_to_save"] and config["bias"] == "none" and not config["use_dora"]
    weights = _adapter(sft_adapter)
    assert weights and all("lora_A" in k or "lora_B" in k for k in weights)
    # lora_B starts at zero: non-zero means the steps trained it.
    assert all(weights[k].abs().sum() > 0 for k in weights if "lora_B" in k)


def test_sft_continues_the_parent_adapter_at_its_rank(
    sft_adapter: Path,
    tiny_llama_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "child"
    with caplog.at_level(logging.INFO, logger="chimera.training"):
        logging.getLogger("chimera.training").addHandler(caplog.handler)
        try:
            train_sft(tiny_llama_dir, CONVS, _sft_config(8, 1e-3), out, parent_adapter=sft_adapter)
        finally:
            logging.getLogger("chimera.training").removeHandler(caplog.handler)
    assert "configured lora_r 8 differs from the parent adapter's rank 4" in caplog.text
    assert adapter_rank(out) == 4
    parent, child = _adapter(sft_adapter), _adapter(out)
    assert child.keys() == parent.keys()
    assert any(not torch.equal(parent[k], child[k]) for k in parent)
    # Continued, not restarted: two small steps away from the parent, whereas a fresh adapter
    # would have new random lora_A and all-zero-based lora_B.
    for key in parent:
        assert (child[key] - parent[key]).abs().max() < 0.05, key


def test_grpo_continues_the_parent_adapter(tiny_llama_dir: Path, tmp_path: Path) -> None:
    parent = random_adapter(tiny_llama_dir, tmp_path / "parent", r=4)
    examples = [
        {"prompt": [{"role": "user", "content": f"Name a test for drug {i}."}], "task_id": str(i)}
        for i in range(2)
    ]

    def reward(prompts: list, completions: list, **_: object) -> list[float]:
        # Varied rewards give non-zero group advantages, hence a real gradient.
        return [len(set(str(c))) / 20 for c in completions]

    cfg = GRPOOptions(total_steps=1, rollout_n=2, train_batch_size=2, max_response_length=8,
                    learning_rate=1e-2, lora_r=16)  # fmt: skip
    out = tmp_path / "child"
    result = train_grpo(tiny_llama_dir, examples, reward, cfg, out, parent_adapter=parent)
    assert result.steps == 1
    assert sorted(p.name for p in out.iterdir()) == [
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
        "chimera_training.json",
    ]
    assert adapter_rank(out) == 4
    before, after = _adapter(parent), _adapter(out)
    assert after.keys() == before.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_merged_export_computes_what_base_plus_adapter_computes(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = random_adapter(tiny_llama_dir, tmp_path / "adapter")
    merged_dir = merge_adapter(tiny_llama_dir, adapter, tmp_path / "merged")
    assert structure_problems(merged_dir) == []  # config, weights, tokenizer, chat template
    assert not (merged_dir / ADAPTER_CONFIG).exists()

    ids = torch.tensor([[5, 17, 42, 99, 3, 250]])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    with torch.no_grad():
        plain = base(ids).logits
        expected = PeftModel.from_pretrained(base, str(adapter)).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)(ids).logits
    assert not torch.allclose(plain, expected, atol=1e-3)  # the adapter does something
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-4)


def test_merge_refuses_a_used_destination_and_a_non_adapter(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("keep me")
    adapter = random_adapter(tiny_llama_dir, tmp_path / "adapter")
    with pytest.raises(ChimeraError, match="exists and is not an empty directory"):
        merge_adapter(tiny_llama_dir, adapter, used)
    with pytest.raises(ChimeraError, match="is not a LoRA adapter"):
        merge_adapter(tiny_llama_dir, tiny_llama_dir, tmp_path / "new")
    assert (used / "x").read_text() == "keep me"


def test_sft_keeps_the_answer_of_an_example_longer_than_max_seq_length(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    long_prompt = "Study context: " + "the trial measured outcomes. " * 200  # >> 64 tokens
    convs = [[{**CONVS[0][0], "content": long_prompt}, CONVS[0][1]]] * 2
    cfg = _sft_config(4, 1e-2).model_copy(update={"max_seq_length": 64})
    result = train_sft(tiny_llama_dir, convs, cfg, tmp_path / "sft")
    assert result.steps == cfg.max_steps and result.losses  # not dropped: trained on the answer
