"""Whether training changed a LoRA adapter at all.

An RL step whose samples all score the same (every completion unparsable, say) has zero
advantages and zero gradient; the adapter it saves is its starting point. Registering it would
make a challenger that serves a no-op adapter, costs LoRA compute and looks trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chimera_core.training.checkpoint import ADAPTER_WEIGHTS


def _tensors(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(directory / ADAPTER_WEIGHTS))


def adapter_unchanged(trained: Path, start: Path | None) -> bool:
    """True when ``trained`` adds nothing new: every ``lora_B`` zero (a fresh adapter's start:
    PEFT initialises B to zero, so B·A = 0) or, continued from ``start``, every tensor equal."""
    import torch

    weights = _tensors(trained)
    if start is None:
        b = [t for name, t in weights.items() if "lora_B" in name]
        return bool(b) and not any(torch.any(t) for t in b)
    before = _tensors(start)
    return weights.keys() == before.keys() and all(
        torch.equal(t, before[name]) for name, t in weights.items()
    )
