"""LoRA for the built-in trainers: a fresh adapter or the parent version's, saved vLLM-servable.

Training continues the parent version's adapter rather than stacking a new one, so every
version stays a single adapter over the same base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chimera_core.plugins import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    TARGET_MODULES,
    ChimeraError,
    adapter_rank,
    get_logger,
    is_adapter_dir,
    load_base,
)

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
