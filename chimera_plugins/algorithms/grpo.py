"""Algorithm ``grpo``: RL for the senior roles on CPU with TRL's GRPOTrainer.

Prompts are the seniors' real prompts from the gathered traces. Fresh completions are scored by
the reward plugins: a designer's protocol by ``protocol_rubric`` against the task's context, a
refiner's hypothesis by its grounding in the context, both gated on the role's JSON schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chimera_core.config.models import ChimeraConfig
from chimera_core.data.dataset import load_task_dataset
from chimera_core.data.tasks import ResearchTask
from chimera_core.data.training_data import RLExample
from chimera_core.plugins import PluginRegistry, RewardInput
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_inputs import (
    gathered_training_data,
    train_and_register,
    trained_alias,
)
from chimera_plugins.rewards.protocol_rubric import content_words

DESIGNER = "ProtocolDesigner"
SCHEMA_WEIGHT = 0.3  # a parseable answer is worth something on its own: the lab depends on it


def _completion_text(completion: Any) -> str:
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion)


def senior_reward(
    config: ChimeraConfig, registry: PluginRegistry, tasks: Mapping[str, ResearchTask]
) -> Any:
    """A TRL reward function over (role, task_id) dataset columns."""
    from chimera_core.lab.parsing import OutputError, parse_output
    from chimera_core.lab.schemas import Protocol, RefinedHypothesis

    def reward(
        prompts: list[Any], completions: list[Any], role: list[str], task_id: list[str], **_: Any
    ) -> list[float]:
        scores = []
        for completion, r, tid in zip(completions, role, task_id, strict=True):
            text = _completion_text(completion)
            task = tasks[tid]
            try:
                if r == DESIGNER:
                    protocol = parse_output(text, Protocol)
                    inp = RewardInput(
                        task=task, state={"final_protocol": protocol.model_dump()}, config=config
                    )
                    quality = registry.reward("protocol_rubric").score(inp).value
                else:
                    hyp = parse_output(text, RefinedHypothesis)
                    words = content_words(hyp.refined_hypothesis)
                    overlap = len(words & content_words(task.context)) / max(1, len(words))
                    quality = min(1.0, overlap / 0.33)
            except OutputError:
                scores.append(0.0)
                continue
            scores.append(SCHEMA_WEIGHT + (1 - SCHEMA_WEIGHT) * quality)
        return scores

    return reward


def grpo_examples(rl: list[RLExample]) -> list[dict[str, Any]]:
    """Distinct (role, prompt) pairs as TRL conversational prompts with their columns."""
    seen: set[tuple[str, str]] = set()
    out = []
    for ex in rl:
        if not ex.prompt_messages:
            continue
        key = (ex.role, str(ex.prompt_messages))
        if key in seen:
            continue
        seen.add(key)
        prompt = [
            {"role": m["role"], "content": str(m.get("content") or "")} for m in ex.prompt_messages
        ]
        out.append({"prompt": prompt, "role": ex.role, "task_id": ex.task_id})
    return out


class GRPOAlgorithm:
    """CPU RL for the trainable (senior) alias; the result is registered as a new version."""

    name = "grpo"

    def train(self, ctx: StageContext) -> StageResult:
        """Harvest senior prompts, run GRPO on the champion's adapter, register the new one."""
        from chimera_core.training.grpo import train_grpo

        cfg = ctx.config.stages.ppo
        data = gathered_training_data(ctx)
        examples = grpo_examples(data.rl)
        metrics: dict[str, Any] = {"senior_calls": len(data.rl), "prompts": len(examples)}
        if not examples:
            metrics["skipped"] = "no senior prompts in the gathered traces"
            return StageResult(stage=ctx.stage, run_id=ctx.run_id, metrics=metrics)
        _, tasks = load_task_dataset(ctx.store, ctx.result_of("ingest").outputs["dataset_version"])
        by_id = {t.id: t for t in tasks}
        reward = senior_reward(ctx.config, ctx.registry, by_id)
        return train_and_register(
            ctx,
            trained_alias(ctx, "senior", trainable_only=True),
            lambda base, parent, out: train_grpo(
                base, examples, reward, cfg, out, parent_adapter=parent
            ),
            examples=examples,
            stage_config=cfg,
            metrics=metrics,
            reported={"steps", "mean_rewards", "losses", "seconds_per_step"},
        )
