"""Per-tier training data derived from traced rollouts (what the trace adapter produces)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class BanditSample(BaseModel):
    """One logged supervisor decision and the rollout's final reward."""

    task_id: str
    goal: str
    hypotheses: list[str] = Field(min_length=1)
    chosen: int = Field(ge=0)
    propensity: float = Field(
        gt=0.0, le=1.0, description="Probability the logging policy chose it."
    )
    reward: float


class SFTExample(BaseModel):
    """One role's conversation (system, user, assistant...) from a rewarded rollout.

    ``reward`` is what the role is judged by: the rollout's reward for a junior, the verifiable
    decision reward (``decision_alignment``) for a board role.
    """

    role: str
    task_id: str
    rollout_id: str
    reward: float
    messages: list[dict[str, Any]]


class RLExample(BaseModel):
    """One senior LLM call as a training triplet: prompt, response (token ids too), reward."""

    role: str
    task_id: str
    rollout_id: str
    reward: float | None
    prompt_messages: list[dict[str, Any]]
    prompt_token_ids: list[int] = Field(default_factory=list)
    response_text: str = ""
    response_token_ids: list[int] = Field(default_factory=list)


class TrainingData(BaseModel):
    """Everything the three trainers need, from one set of rollouts."""

    sft: list[SFTExample] = Field(default_factory=list)
    rl: list[RLExample] = Field(default_factory=list)
    bandit: list[BanditSample] = Field(default_factory=list)
    n_rollouts: int = 0
    n_spans: int = 0

    def counts(self) -> dict[str, int]:
        """How much each tier got: what a person checks after a gather."""
        return {
            "rollouts": self.n_rollouts,
            "spans": self.n_spans,
            "sft_conversations": len(self.sft),
            "rl_triplets": len(self.rl),
            "rl_triplets_with_token_ids": sum(
                1 for x in self.rl if x.prompt_token_ids and x.response_token_ids
            ),
            "bandit_samples": len(self.bandit),
        }
