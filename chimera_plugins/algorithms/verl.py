"""Algorithm ``verl``: online GRPO/PPO of the senior roles with Agent Lightning's VERL (GPU).

VERL serves the policy with vLLM, runs the lab's rollouts through the LLM proxy, and updates
a LoRA adapter between batches: the champion's adapter when there is one (verl's
``lora_adapter_path``), else a fresh one. What it returns is the adapter VERL saves
(``global_step_N/actor/lora_adapter``), like the CPU trainers' output. It needs CUDA and the
``gpu`` extra (verl 0.6, vLLM, hydra); without them the stage stops with a clear message instead
of failing deep inside Ray.
"""

from __future__ import annotations

from chimera_core.plugins import ChimeraError, TrainRequest, TrainResult
from chimera_plugins.algorithms.digest import require_base
from chimera_plugins.algorithms.options import VERLOptions
from chimera_plugins.algorithms.verl_config import (
    latest_actor_adapter,
    missing_requirements,
    verl_config,
)


class VERLAlgorithm:
    """Online RL of the trainable alias through Agent Lightning's VERL."""

    name = "verl"
    options_model = VERLOptions

    def train(self, request: TrainRequest) -> TrainResult:
        """Check the GPU stack, then run agl.VERL over the training tasks."""
        if missing := missing_requirements():
            raise ChimeraError(
                f"stages.ppo.algorithm 'verl' needs a CUDA machine with verl and vLLM; missing: "
                f"{', '.join(missing)}. The gpu extra brings vLLM but not verl, whose releases "
                "do not install beside our transformers (see pyproject.toml): run this stage in "
                "the VERL worker image (docker/verl-worker.Dockerfile, pins in "
                "constraints-verl.txt), or use algorithm 'grpo' (the local profile does)."
            )
        if request.online_lab is None:
            raise ChimeraError(f"stage {request.stage!r} offers no online lab; verl needs one")
        import agentlightning as agl
        import torch

        cfg: VERLOptions = request.options
        work = request.output_dir.parent / "verl"
        config = verl_config(
            cfg,
            str(require_base(request)),
            torch.cuda.device_count(),
            request.run_id,
            parent_adapter=str(request.parent) if request.parent else None,
        )
        config["trainer"]["default_local_dir"] = str(work)
        with request.online_lab(cfg.train_batch_size * cfg.total_steps) as lab:
            trainer = agl.Trainer(
                n_runners=request.config.stages.gather.n_runners,
                algorithm=agl.VERL(config),
                adapter=agl.TracerTraceToTriplet(agent_match=lab.role_match),
            )
            trainer.fit(lab.agent, train_dataset=lab.inputs)
        return TrainResult(
            output_dir=latest_actor_adapter(work),
            metrics={"tasks": len(lab.inputs), "algorithm": self.name},
            config=config,
        )
