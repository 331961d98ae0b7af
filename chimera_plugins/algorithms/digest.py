"""What every built-in algorithm records: a digest of its examples; the base it needs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from chimera_core.plugins import ChimeraError, TrainRequest


def data_sha256(items: list[Any]) -> str:
    """A stable digest of training examples (pydantic models or JSON-able objects)."""
    digest = hashlib.sha256()
    for item in items:
        dumped = item.model_dump(mode="json") if hasattr(item, "model_dump") else item
        digest.update(json.dumps(dumped, sort_keys=True).encode())
    return digest.hexdigest()


def require_base(request: TrainRequest) -> Path:
    """The base model directory of an LLM alias (a policy stage has none)."""
    if request.base_model is None:
        raise ChimeraError(
            f"stage {request.stage!r} trains {request.alias!r}, which has no base model"
        )
    return request.base_model
