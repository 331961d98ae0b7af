"""The VERL run itself (imported only on a CUDA machine with verl, vLLM and ray installed)."""

from __future__ import annotations

from pathlib import Path

from chimera_core.data.dataset import load_task_dataset
from chimera_core.errors import ChimeraError
from chimera_core.rollouts.agl_env import prepare_agl_environment
from chimera_core.rollouts.serving import serve_model_set
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_inputs import checkpoint_dirs, trained_alias
from chimera_plugins.algorithms.verl import verl_config


def latest_actor_adapter(root: Path) -> Path:
    """The newest LoRA adapter VERL saved with the actor (global_step_N/actor/lora_adapter)."""
    steps = sorted(
        (p.parent for p in root.glob("global_step_*/actor/lora_adapter/adapter_config.json")),
        key=lambda p: int(p.parts[-3].split("_")[-1]),
    )
    if not steps:
        # verl logs a failed adapter save ("Save LoRA Adapter Error") and carries on.
        raise ChimeraError(
            f"VERL saved no LoRA adapter under {root} (global_step_N/actor/lora_adapter); "
            "see its log for 'Save LoRA Adapter Error', and check trainer.save_freq"
        )
    return steps[-1]


def run_verl(ctx: StageContext) -> StageResult:
    """Online RL through the proxy: VERL serves the senior alias, the rest is served as usual."""
    prepare_agl_environment()
    import agentlightning as agl
    import torch

    from chimera_core.rollouts.agent import MedicalResearchAgent
    from chimera_core.rollouts.runner import record_key, spans_key
    from chimera_core.stages.gather import dataset_version

    cfg = ctx.config.stages.ppo
    alias = trained_alias(ctx, "senior", trainable_only=True)
    registry = ctx.models
    parent = registry.champion(alias)
    work = Path(ctx.config.serving.models_dir) / "verl" / ctx.run_id
    base_dir, parent_adapter = checkpoint_dirs(ctx, alias, parent)
    config = verl_config(
        cfg,
        str(base_dir),
        torch.cuda.device_count(),
        ctx.run_id,
        parent_adapter=str(parent_adapter) if parent_adapter else None,
    )
    config["trainer"]["default_local_dir"] = str(work)
    _, tasks = load_task_dataset(ctx.store, dataset_version(ctx))
    train = [t for t in tasks if t.split == ctx.config.stages.gather.split][
        : cfg.train_batch_size * cfg.total_steps
    ]
    others = {
        a: v for a, v in registry.model_set("champion", ctx.config.models).items() if a != alias
    }
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
            for t in train
        ]
        seniors = "|".join(ctx.config.roles_of_tier("senior"))
        trainer = agl.Trainer(
            n_runners=ctx.config.stages.gather.n_runners,
            algorithm=agl.VERL(config),
            adapter=agl.TracerTraceToTriplet(agent_match=rf"^({seniors})(\.|$)"),
        )
        # VERL publishes only the trained model; the other aliases keep their endpoints, held
        # by the agent in memory (not in the dataset, so the server key stays out of VERL).
        agent = MedicalResearchAgent(ctx.config, fallback={a: endpoints[a] for a in others})
        trainer.fit(agent, train_dataset=inputs)
    version = registry.register(
        alias,
        latest_actor_adapter(work),
        parent=parent,
        stage=ctx.stage,
        run_id=ctx.run_id,
        config=config,
    )
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={"model": version.uri, "alias": alias, "version": version.version},
        metrics={"tasks": len(train), "algorithm": "verl"},
    )
