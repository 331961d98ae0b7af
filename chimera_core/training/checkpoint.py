"""LoRA adapters: what the trainers load and save, and the merged export.

A trained version of an LLM alias is one PEFT adapter directory (``adapter_config.json`` and
``adapter_model.safetensors``) over the alias's base HF directory: what vLLM serves with
``--lora-modules``. Training continues the parent version's adapter rather than stacking a new
one, so every version stays a single adapter over the same base.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chimera_core.errors import ChimeraError
from chimera_core.logs import get_logger

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# The attention projections: vLLM serves LoRA on these for Llama, and they are all we train.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")

log = get_logger("training")


class TrainedModel(BaseModel):
    """What a trainer returns: where it saved the adapter, plus what it did (in subclasses)."""

    output_dir: str


@dataclass(frozen=True)
class LoraSpec:
    """The adapter a run creates when there is no parent (a parent adapter keeps its own)."""

    r: int
    alpha: int
    target_modules: Sequence[str] = TARGET_MODULES

    def peft_config(self) -> Any:
        """The ``peft.LoraConfig``: no dropout, no bias, no ``modules_to_save`` (vLLM-servable)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            target_modules=list(self.target_modules),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )


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


def continue_adapter(model: Any, parent_adapter: Path, lora: LoraSpec) -> Any:
    """Wrap ``model`` with the parent's adapter, trainable, at the parent's rank.

    A configured rank that differs is logged and not applied: changing it would mean a fresh
    adapter (losing what the parent learned) or a second one (which vLLM cannot serve as one).
    """
    from peft import PeftModel

    if not is_adapter_dir(parent_adapter):
        raise ChimeraError(f"{parent_adapter} is not a LoRA adapter (no {ADAPTER_CONFIG})")
    rank = adapter_rank(parent_adapter)
    if rank != lora.r:
        log.info(
            "configured lora_r %d differs from the parent adapter's rank %d (%s): "
            "continuing the parent at rank %d",
            lora.r,
            rank,
            parent_adapter,
            rank,
        )
    return PeftModel.from_pretrained(model, str(parent_adapter), is_trainable=True)


def load_for_training(
    base_dir: Path, parent_adapter: Path | None, lora: LoraSpec
) -> tuple[Any, Any]:
    """The base with a trainable adapter (the parent's, or a fresh ``lora``), and the tokenizer."""
    from peft import get_peft_model

    model, tokenizer = load_base(base_dir)
    if parent_adapter is None:
        return get_peft_model(model, lora.peft_config()), tokenizer
    return continue_adapter(model, parent_adapter, lora), tokenizer


def save_adapter(model: Any, output_dir: Path) -> Path:
    """Save only the trained adapter (no base weights, no tokenizer): a vLLM LoRA module."""
    output_dir.mkdir(parents=True, exist_ok=True)
    # Only "default": TRL may add a frozen "ref" copy (GRPO with beta > 0) that must not ship.
    model.save_pretrained(
        str(output_dir), selected_adapters=["default"], save_embedding_layers=False
    )
    # PEFT's generated model card only names this machine's base path; the version record says more.
    (output_dir / "README.md").unlink(missing_ok=True)
    if not (output_dir / ADAPTER_WEIGHTS).is_file():
        raise ChimeraError(f"saving the adapter wrote no {ADAPTER_WEIGHTS} in {output_dir}")
    return output_dir


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
