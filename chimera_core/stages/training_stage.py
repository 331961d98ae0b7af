"""What the training stages share: stages orchestrate, plugins compute.

A training stage reads this run's gathered rollouts, turns them into typed training data with
the adapter plugin the config names (``stages.trace_adapter``), hands that to the algorithm
plugin its section names, and registers the directory that comes back as a new version.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from chimera_core.data.output_parsing import OutputError, parse_output
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.data.tasks import ResearchTask
from chimera_core.data.training_data import TrainingData
from chimera_core.errors import ChimeraError, DataError, FaultError, ModelFileError
from chimera_core.lab.graph import role_spec
from chimera_core.model_registry import BASE
from chimera_core.plugins import (
    OnlineLab,
    RewardInput,
    ScoreCompletion,
    TracedRollout,
    TrainRequest,
)
from chimera_core.plugins.config_check import algorithm_options
from chimera_core.rollouts.storage import load_records, read_spans, spans_key
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.training.adapter_change import adapter_unchanged
from chimera_core.training.checkpoint import is_adapter_dir


def _traced(
    ctx: StageContext, prefix: str
) -> tuple[list[RolloutRecord], dict[str, list[dict[str, Any]] | None], TrainingData]:
    """The records under a prefix, their spans (None: no readable file) and the adapter's data."""
    records = load_records(ctx.store, prefix)
    spans = {r.task_id: read_spans(ctx.store, prefix, r.task_id) for r in records}
    traced = [TracedRollout(record=r, spans=spans[r.task_id] or []) for r in records]
    data = ctx.plugins.adapter(ctx.config.stages.trace_adapter).adapt(traced, ctx.config)
    return records, spans, data


def adapt_rollouts(ctx: StageContext, prefix: str) -> TrainingData:
    """The configured trace adapter's output for the rollouts (records, spans) under a prefix."""
    return _traced(ctx, prefix)[2]


def _has_choice(record: RolloutRecord) -> bool:
    """Whether a record logged a supervisor choice the bandit can learn from."""
    sup = record.supervisor
    return bool(sup.hypotheses) and sup.chosen is not None and bool(sup.propensity)


def gathered_training_data(ctx: StageContext, *, llm: bool) -> TrainingData:
    """This run's gathered rollouts as training data; rollouts it cannot use are a DataError.

    An LLM stage learns from the spans, so a usable rollout without a readable spans file stops
    it (training on the rest, or reporting "nothing passed", would hide the loss). The bandit
    learns from the records' supervisor choices: it stops only if the adapter dropped a choice
    for want of spans.
    """
    prefix = ctx.result_of("gather").outputs["rollouts_key"]
    records, spans, data = _traced(ctx, prefix)
    usable = [r for r in records if r.status == "succeeded" and r.reward is not None]
    missing = [r for r in usable if spans[r.task_id] is None]
    if not llm:
        kept = {x.task_id for x in data.bandit}
        missing = [r for r in missing if _has_choice(r) and r.task_id not in kept]
    if missing:
        files = ", ".join(
            f"task {r.task_id} ({ctx.store.uri(spans_key(prefix, r.task_id))})" for r in missing[:3]
        )
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(
            f"stage {ctx.stage!r}: {len(missing)} gathered rollout(s) of run {ctx.run_id!r} have "
            f"no readable spans file: {files}{more}. Restore the spans, or delete those records "
            f"and run `chimera stage gather --run-id {ctx.run_id} --force` to run the tasks "
            f"again; then rerun `chimera stage {ctx.stage} --run-id {ctx.run_id}`"
        )
    return data


def trained_task_ids(data: TrainingData) -> list[str]:
    """The tasks whose rollouts fed the training data (a version's lineage records them)."""
    ids = {x.task_id for x in data.sft} | {x.task_id for x in data.rl}
    return sorted(ids | {x.task_id for x in data.bandit})


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


def completion_scorer(ctx: StageContext, tasks: Mapping[str, ResearchTask]) -> ScoreCompletion:
    """Score a role's raw output with a reward plugin, as if it ended a rollout's state."""

    def score(role: str, task_id: str, text: str, reward: str) -> float | None:
        spec = role_spec(role, ctx.config)
        try:
            output = parse_output(text, spec.schema)
        except OutputError:
            return None
        state = spec.apply(output, {}, role)
        inp = RewardInput(task=tasks[task_id], state=state, config=ctx.config)
        return ctx.plugins.reward(reward).score(inp).value

    return score


def online_lab(
    ctx: StageContext, alias: str, tasks: list[ResearchTask]
) -> Callable[[int], AbstractContextManager[OnlineLab]]:
    """An ``OnlineLab`` factory: the other aliases served, the trained one left to the algorithm."""
    from chimera_core.rollouts.agent import MedicalResearchAgent
    from chimera_core.rollouts.agl_env import prepare_agl_environment
    from chimera_core.rollouts.storage import record_key
    from chimera_core.serving.model_sets import serve_model_set

    @contextmanager
    def open_lab(n_tasks: int) -> Iterator[OnlineLab]:
        prepare_agl_environment()
        registry = ctx.models
        champions = registry.model_set("champion", ctx.config.models)
        others = {a: v for a, v in champions.items() if a != alias}
        chosen = tasks[:n_tasks]
        with serve_model_set(ctx.config, others, registry) as endpoints:
            inputs = [
                {
                    "run_id": ctx.run_id,
                    "stage": ctx.stage,
                    "task": t.model_dump(mode="json"),
                    "record_key": record_key(ctx.key("rollouts"), t.id),
                    "spans_key": spans_key(ctx.key("rollouts"), t.id),
                    "explore": True,
                }
                for t in chosen
            ]
            trained = "|".join(r for r, c in ctx.config.roles.items() if c.model == alias)
            # The other aliases' endpoints are held by the agent in memory (not in the
            # dataset), so the server key stays out of the algorithm's data.
            agent = MedicalResearchAgent(ctx.config, fallback=endpoints)
            yield OnlineLab(agent=agent, inputs=inputs, role_match=rf"^({trained})(\.|$)")

    return open_lab


def _incomplete_version(ctx: StageContext, alias: str) -> bool:
    """Whether an earlier attempt of this stage registered ``<stage>-<run id>`` but stored no
    result (the store failed, or the process died, between the two).

    Such a version is never reused as this attempt's: it is kept (versions are immutable, and
    one may have been served or promoted by hand) and the new one is registered beside it.
    """
    version = f"{ctx.stage}-{ctx.run_id}"
    if ctx.has_result(ctx.stage) or version not in ctx.models.versions(alias):
        return False
    ctx.log.warning(
        "version %s of %s was registered by an earlier attempt of this stage that stored no "
        "result (%s is missing); it is kept but not reused: what this attempt trains is "
        "registered as %s-2 (or the next free number)",
        version,
        alias,
        ctx.store.uri(ctx.key("result.json")),
        version,
    )
    return True


def _flat_rewards(metrics: Mapping[str, Any]) -> str:
    """Why an RL trainer's gradient was zero, when its per-step rewards show it."""
    rewards = metrics.get("mean_rewards")
    if isinstance(rewards, list) and rewards and len(set(rewards)) == 1:
        return f" (its samples' mean reward was {rewards[0]:g} at all {len(rewards)} steps)"
    return ""


def run_training_stage(ctx: StageContext, alias: str, *, llm: bool) -> StageResult:
    """Train ``alias`` with the stage's algorithm; register the result as a new version.

    ``llm`` aliases get the base model directory and continue the champion's LoRA adapter; a
    policy alias (the bandit's) continues the champion policy directory.
    """
    section = getattr(ctx.config.stages, ctx.stage)
    algorithm = ctx.plugins.algorithm(section.algorithm)
    options = algorithm_options(ctx.config, ctx.stage, ctx.plugins)
    tasks = ctx.tasks()
    by_id = {t.id: t for t in tasks}
    data = gathered_training_data(ctx, llm=llm)
    registry = ctx.models
    parent = registry.champion(alias)
    new_revision = ctx.force or _incomplete_version(ctx, alias)
    base_dir: Path | None = None
    parent_dir: Path | None = None
    if llm:
        from chimera_core.serving.model_store import resolve_checkpoint

        base_dir = resolve_checkpoint(ctx.config.models[alias].checkpoint, ctx.config)
        parent_dir = None if parent == BASE else registry.fetch_adapter(alias, parent)
    elif parent != BASE:
        parent_dir = registry.fetch(alias, parent)
    train_split = [t for t in tasks if t.split == ctx.config.stages.gather.split]

    def save_artifact(name: str, payload: bytes) -> str:
        ctx.store.put_bytes(ctx.key(name), payload)
        return ctx.store.uri(ctx.key(name))

    with tempfile.TemporaryDirectory() as tmp:
        request = TrainRequest(
            stage=ctx.stage,
            run_id=ctx.run_id,
            alias=alias,
            config=ctx.config,
            options=options,
            data=data,
            tasks=by_id,
            output_dir=Path(tmp) / "output",
            log=ctx.log,
            base_model=base_dir,
            parent=parent_dir,
            save_artifact=save_artifact,
            score_completion=completion_scorer(ctx, by_id),
            online_lab=online_lab(ctx, alias, train_split) if llm else None,
        )
        ctx.log.info("algorithm %r trains %s from %s", algorithm.name, alias, parent)
        result = algorithm.train(request)
        metrics = {"algorithm": algorithm.name, **result.metrics}
        if result.output_dir is None:
            metrics["skipped"] = result.skipped or "the algorithm trained nothing"
            ctx.log.info("nothing trained: %s", metrics["skipped"])
            return StageResult(stage=ctx.stage, run_id=ctx.run_id, metrics=metrics)
        if llm and not is_adapter_dir(result.output_dir):
            raise FaultError(
                f"algorithm {algorithm.name!r} saved no LoRA adapter in {result.output_dir}"
            )
        if llm and adapter_unchanged(result.output_dir, parent_dir):
            # Not registered: the challenger serves the champion for this alias, and the
            # report says the tier had no learning signal rather than showing it as trained.
            metrics["skipped"] = (
                f"no learning signal: the adapter {algorithm.name!r} saved equals its start "
                f"({parent}){_flat_rewards(metrics)}; nothing registered, {alias} stays {parent}"
            )
            ctx.log.warning("nothing registered: %s", metrics["skipped"])
            return StageResult(stage=ctx.stage, run_id=ctx.run_id, metrics=metrics)
        try:
            version = registry.register(
                alias,
                result.output_dir,
                parent=parent,
                stage=ctx.stage,
                run_id=ctx.run_id,
                data_sha256=result.data_sha256,
                config=result.config,
                metrics=metrics,
                task_ids=trained_task_ids(data),
                # --force retrains, or an earlier attempt registered the version but stored no
                # result: keep what this one trained (as <stage>-<run id>-N), not the old one
                new_revision=new_revision,
            )
        except ModelFileError as exc:  # NaN/Inf or unreadable weights: say which trainer
            raise ModelFileError(f"algorithm {algorithm.name!r} trained {alias}: {exc}") from None
    if llm and ctx.serving is not None:  # a pipeline's server: serve the new adapter at once
        ctx.serving.offer(alias, version.version)
    output = "model" if llm else "policy"
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={output: version.uri, "alias": alias, "version": version.version},
        metrics=metrics,
    )
