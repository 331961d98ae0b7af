"""What the training stages share: the gathered rollouts as training data, and base checkpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from chimera_core.data.training_data import TrainingData
from chimera_core.errors import ChimeraError
from chimera_core.registry import BASE, ModelRegistry
from chimera_core.rollouts.runner import load_records, load_spans
from chimera_core.stages.base import StageContext

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
