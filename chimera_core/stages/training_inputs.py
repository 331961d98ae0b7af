"""What the training stages share: the gathered rollouts as training data, and base checkpoints."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chimera_core.data.training_data import TrainingData
from chimera_core.errors import ChimeraError
from chimera_core.registry import BASE, ModelRegistry
from chimera_core.rollouts.runner import load_records, load_spans
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.training.checkpoint import TrainedModel

ADAPTER = "hierarchical"


def gathered_training_data(ctx: StageContext) -> TrainingData:
    """Run the trace adapter over this run's gathered rollouts (records plus saved spans)."""
    return adapt_rollouts(ctx, ctx.result_of("gather").outputs["rollouts_key"])


def adapt_rollouts(ctx: StageContext, prefix: str) -> TrainingData:
    """The trace adapter's output for the rollouts (records plus saved spans) under a prefix."""
    from chimera_plugins.adapters.hierarchical import TracedRollout

    traced = [
        TracedRollout(record=r, spans=load_spans(ctx.store, prefix, r.task_id))
        for r in load_records(ctx.store, prefix)
    ]
    data: TrainingData = ctx.registry.adapter(ADAPTER).adapt(traced, ctx.config)
    return data


def data_sha256(items: list[object]) -> str:
    """A stable digest of training examples (pydantic models or JSON-able objects)."""
    digest = hashlib.sha256()
    for item in items:
        dumped = item.model_dump(mode="json") if hasattr(item, "model_dump") else item
        digest.update(json.dumps(dumped, sort_keys=True).encode())
    return digest.hexdigest()


def model_registry(ctx: StageContext) -> ModelRegistry:
    """The registry on this run's artifact store, caching fetched versions under models_dir."""
    return ModelRegistry(ctx.store, ctx.config.serving.models_dir / "registry")


def trained_alias(ctx: StageContext, tier: str, trainable_only: bool = False) -> str:
    """The single model alias the roles of a tier use (what a trained version replaces)."""
    aliases = {
        role.model
        for role in ctx.config.roles.values()
        if role.tier == tier and (role.trainable or not trainable_only)
    }
    if len(aliases) != 1:
        raise ChimeraError(
            f"the {tier} roles use model aliases {sorted(aliases)}; training needs exactly one"
        )
    return aliases.pop()


def checkpoint_dir(ctx: StageContext, alias: str, version: str) -> Path:
    """A local HF directory for an alias's version (the prepared base, or a fetched version)."""
    if version == BASE:
        from chimera_core.serving.model_store import resolve_checkpoint

        return resolve_checkpoint(ctx.config.models[alias].checkpoint, ctx.config)
    return model_registry(ctx).fetch(alias, version)


def train_and_register(
    ctx: StageContext,
    alias: str,
    train: Callable[[Path, Path], TrainedModel],
    *,
    examples: Sequence[object],
    stage_config: BaseModel,
    metrics: dict[str, Any],
    reported: set[str],
) -> StageResult:
    """Train the alias's champion with ``train(base_dir, output_dir)``, register the new version.

    The stage result names the version; ``reported`` fields of the trainer's result join
    ``metrics``.
    """
    registry = model_registry(ctx)
    parent = registry.champion(alias)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(checkpoint_dir(ctx, alias, parent), Path(tmp) / "model")
        version = registry.register(
            alias,
            Path(result.output_dir),
            parent=parent,
            stage=ctx.stage,
            run_id=ctx.run_id,
            data_sha256=data_sha256(list(examples)),
            config=stage_config.model_dump(mode="json"),
            metrics=result.model_dump(exclude={"output_dir"}),
        )
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={"model": version.uri, "alias": alias, "version": version.version},
        metrics={**metrics, **result.model_dump(include=reported)},
    )
