"""Algorithm ``grpo``: RL for the senior roles on CPU with TRL's GRPOTrainer.

Prompts are the seniors' real prompts from the gathered traces. Fresh completions are scored by
a reward plugin per role (``role_rewards``), gated on the role's output schema: a completion
that does not parse scores 0, one that parses gets ``schema_weight`` plus the rest by quality.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chimera_core.plugins import (
    RLExample,
    ScoreCompletion,
    TrainRequest,
    TrainResult,
)
from chimera_plugins.algorithms.digest import data_sha256, require_base
from chimera_plugins.algorithms.options import GRPOOptions


def _completion_text(completion: Any) -> str:
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion)


def senior_reward(score: ScoreCompletion, options: GRPOOptions) -> Callable[..., list[float]]:
    """A TRL reward function over (role, task_id) dataset columns."""

    def reward(
        prompts: list[Any], completions: list[Any], role: list[str], task_id: list[str], **_: Any
    ) -> list[float]:
        scores = []
        for completion, r, tid in zip(completions, role, task_id, strict=True):
            name = options.role_rewards.get(r)
            quality = None if name is None else score(r, tid, _completion_text(completion), name)
            w = options.schema_weight
            scores.append(0.0 if quality is None else w + (1 - w) * quality)
        return scores

    return reward


def grpo_examples(rl: list[RLExample], roles: set[str] | None = None) -> list[dict[str, Any]]:
    """Distinct (role, prompt) pairs as TRL conversational prompts with their columns."""
    seen: set[tuple[str, str]] = set()
    out = []
    for ex in rl:
        if not ex.prompt_messages or (roles is not None and ex.role not in roles):
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
    """CPU RL for the trainable (senior) alias; the adapter is saved for registration."""

    name = "grpo"
    options_model = GRPOOptions

    def train(self, request: TrainRequest) -> TrainResult:
        """Harvest senior prompts, run GRPO on the champion's adapter, save the new one."""
        from chimera_plugins.algorithms.grpo_trainer import train_grpo

        cfg: GRPOOptions = request.options
        roles = set(cfg.role_rewards) & request.roles()
        calls = [ex for ex in request.data.rl if ex.role in roles]
        examples = grpo_examples(calls, roles)
        metrics: dict[str, Any] = {"calls": len(calls), "prompts": len(examples)}
        if not examples:
            reason = f"no prompts of {', '.join(sorted(roles)) or 'a rewarded role'} in the traces"
            return TrainResult(skipped=reason, metrics=metrics)
        result = train_grpo(
            require_base(request),
            examples,
            senior_reward(request.score_completion, cfg),
            cfg,
            request.output_dir,
            parent_adapter=request.parent,
        )
        metrics.update(
            result.model_dump(include={"steps", "mean_rewards", "losses", "seconds_per_step"})
        )
        return TrainResult(
            output_dir=request.output_dir,
            metrics=metrics,
            data_sha256=data_sha256(examples),
            config={"algorithm": self.name, **cfg.model_dump(mode="json")},
        )
