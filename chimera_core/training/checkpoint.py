"""LoRA adapter conventions (what a version of an LLM alias is) and the merged export.

A trained version of an LLM alias is one PEFT adapter directory (``adapter_config.json`` and
``adapter_model.safetensors``) over the alias's base HF directory: what vLLM serves with
``--lora-modules``. Training continues the parent version's adapter rather than stacking a new
one, so every version stays a single adapter over the same base.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chimera_core.errors import ChimeraError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# The attention projections: vLLM serves LoRA on these for Llama, and they are all we train.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def is_adapter_dir(path: Path) -> bool:
    """Whether a directory holds a saved PEFT adapter."""
    return (path / ADAPTER_CONFIG).is_file()


def adapter_rank(adapter_dir: Path) -> int:
    """The LoRA rank ``r`` of a saved adapter."""
    return int(json.loads((adapter_dir / ADAPTER_CONFIG).read_text())["r"])


def load_base(base_dir: Path) -> tuple[Any, Any]:
    """The base model in float32 (CPU training, exact merges) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return model, tokenizer


def require_empty_dir(path: Path) -> None:
    """Refuse a destination that exists and holds anything (never overwrite an export)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ChimeraError(f"{path} exists and is not an empty directory; choose a new one")


def merge_adapter(base_dir: Path, adapter_dir: Path, output_dir: Path) -> Path:
    """Write base + adapter as one plain HF checkpoint (model in the base's dtype, tokenizer)."""
    import torch
    from peft import PeftModel

    require_empty_dir(output_dir)
    if not is_adapter_dir(adapter_dir):
        raise ChimeraError(f"{adapter_dir} is not a LoRA adapter (no {ADAPTER_CONFIG})")
    model, tokenizer = load_base(base_dir)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    # Merged in float32 for exactness, saved at the base's precision (same size to deploy).
    base_config = json.loads((base_dir / "config.json").read_text())
    stored = getattr(torch, str(base_config.get("dtype") or base_config.get("torch_dtype")), None)
    if isinstance(stored, torch.dtype) and stored.is_floating_point:
        merged = merged.to(stored)
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
