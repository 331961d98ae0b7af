"""The CUDA paths for real: unsloth SFT on the tiny model. Skipped without a GPU (CI has none).

Run on a GPU machine with the ``gpu`` extra installed: ``pytest -m gpu``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chimera_plugins.algorithms.options import SFTOptions
from chimera_plugins.algorithms.sft_trainer import choose_backend, train_sft
from tests.training.test_trainers import _trained_modules

pytestmark = pytest.mark.gpu


def test_unsloth_is_chosen_on_cuda() -> None:
    assert choose_backend(SFTOptions(use_unsloth="auto")) == "unsloth"


def test_unsloth_sft_lowers_loss_and_trains_an_adapter(
    base_model_dir: Path, tmp_path: Path
) -> None:
    convs = [
        [
            {"role": "user", "content": f"Does drug {i} lower blood pressure?"},
            {"role": "assistant", "content": json.dumps({"hypothesis": f"Drug {i} lowers it"})},
        ]
        for i in range(8)
    ]
    cfg = SFTOptions(lora_r=4, lora_alpha=8, max_steps=6, batch_size=2, grad_accum=1,
                    max_seq_length=128, use_unsloth="always", learning_rate=1e-3)  # fmt: skip
    result = train_sft(base_model_dir, convs, cfg, tmp_path / "sft")
    assert result.backend == "unsloth" and result.steps == 6
    assert result.losses[-1] < result.losses[0]
    assert _trained_modules(tmp_path / "sft")
