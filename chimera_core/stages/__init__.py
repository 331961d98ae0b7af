"""Pipeline stages: one module per stage, each with ``run(ctx) -> StageResult``."""

from __future__ import annotations

from chimera_core.errors import ChimeraError
from chimera_core.stages import bandit, board, evaluate, gather, ingest, ppo, promote, sft
from chimera_core.stages.base import (
    StageContext,
    StageFn,
    StageResult,
    execute_stage,
    new_run_id,
    safe_run_id,
)

STAGES: dict[str, StageFn] = {
    "ingest": ingest.run,
    "gather": gather.run,
    "sft": sft.run,
    "ppo": ppo.run,
    "bandit": bandit.run,
    "board": board.run,
    "evaluate": evaluate.run,
    "promote": promote.run,
}


def stage_fn(name: str) -> StageFn:
    """The entry point of a stage by name; an unknown name lists the known ones."""
    if name not in STAGES:
        raise ChimeraError(f"unknown stage {name!r} (known: {', '.join(STAGES)})")
    return STAGES[name]


__all__ = [
    "STAGES",
    "StageContext",
    "StageResult",
    "execute_stage",
    "new_run_id",
    "safe_run_id",
    "stage_fn",
]
