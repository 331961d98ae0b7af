"""Pipeline stages. Each is a function ``run(ctx) -> StageResult`` listed in ``STAGES``."""

from __future__ import annotations

import importlib

from chimera_core.errors import ChimeraError
from chimera_core.stages.base import (
    StageContext,
    StageFn,
    StageResult,
    execute_stage,
    new_run_id,
    safe_run_id,
)

# Modules are imported on first use: training stages pull in heavy libraries.
STAGE_MODULES: dict[str, str] = {
    "ingest": "chimera_core.stages.ingest:run",
    "gather": "chimera_core.stages.gather:run",
    "sft": "chimera_core.stages.train:run_sft",
    "ppo": "chimera_core.stages.train:run_ppo",
    "bandit": "chimera_core.stages.train:run_bandit",
    "evaluate": "chimera_core.stages.evaluate:run",
    "promote": "chimera_core.stages.promote:run",
}


def stage_fn(name: str) -> StageFn:
    """The entry point of a stage by name."""
    if name not in STAGE_MODULES:
        raise ChimeraError(f"unknown stage {name!r} (known: {', '.join(STAGE_MODULES)})")
    module, _, attr = STAGE_MODULES[name].partition(":")
    fn: StageFn = getattr(importlib.import_module(module), attr)
    return fn


__all__ = [
    "STAGE_MODULES",
    "StageContext",
    "StageResult",
    "execute_stage",
    "new_run_id",
    "safe_run_id",
    "stage_fn",
]
