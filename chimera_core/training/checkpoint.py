"""Saving a trained LoRA model as a plain HF directory the model server can load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel


def save_merged(model: Any, tokenizer: Any, output_dir: Path) -> Path:
    """Merge a PEFT adapter into its base weights (if any) and save model and tokenizer."""
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


class TrainedModel(BaseModel):
    """What a trainer returns: where it saved the model, plus what it did (in subclasses)."""

    output_dir: str
