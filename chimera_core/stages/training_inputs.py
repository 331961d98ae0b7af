"""What the training stages share: the gathered rollouts as training data, base and parent dirs."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chimera_core.data.training_data import TrainingData
from chimera_core.errors import ChimeraError, FaultError
from chimera_core.registry import BASE
from chimera_core.rollouts.runner import load_records, load_spans
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.training.checkpoint import TrainedModel, is_adapter_dir

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


def checkpoint_dirs(ctx: StageContext, alias: str, version: str) -> tuple[Path, Path | None]:
    """The alias's base HF directory and the version's adapter directory (None for ``base``).

    Every version of an alias is one adapter over the same base: the alias's configured
    checkpoint (``models.<alias>.checkpoint``), prepared locally.
    """
    from chimera_core.serving.model_store import resolve_checkpoint

    adapter = None if version == BASE else ctx.models.fetch_adapter(alias, version)
    return resolve_checkpoint(ctx.config.models[alias].checkpoint, ctx.config), adapter


def train_and_register(
    ctx: StageContext,
    alias: str,
    train: Callable[[Path, Path | None, Path], TrainedModel],
    *,
    examples: Sequence[object],
    stage_config: BaseModel,
    metrics: dict[str, Any],
    reported: set[str],
) -> StageResult:
    """Train the alias's champion, register the resulting adapter as the new version.

    ``train(base_dir, parent_adapter_dir, output_dir)`` continues the champion's adapter (None
    when the champion is ``base``) and saves one adapter in ``output_dir``. The stage result
    names the version; ``reported`` fields of the trainer's result join ``metrics``.
    """
    registry = ctx.models
    parent = registry.champion(alias)
    base_dir, parent_adapter = checkpoint_dirs(ctx, alias, parent)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(base_dir, parent_adapter, Path(tmp) / "model")
        if not is_adapter_dir(Path(result.output_dir)):
            raise FaultError(
                f"the {ctx.stage} trainer saved no LoRA adapter in {result.output_dir}"
            )
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
    if ctx.serving is not None:  # a pipeline's server: serve the new adapter without a restart
        ctx.serving.offer(alias, version.version)
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={"model": version.uri, "alias": alias, "version": version.version},
        metrics={**metrics, **result.model_dump(include=reported)},
    )
