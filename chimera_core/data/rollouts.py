"""The stored summary of one rollout: what gather and evaluate write and the trainers read."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class RoleUsage(BaseModel):
    """LLM usage of one role in one rollout."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class SupervisorLog(BaseModel):
    """What the supervisor saw and chose, with the probability of that choice."""

    hypotheses: list[str] = Field(default_factory=list)
    chosen: int | None = None
    propensity: float | None = None
    policy: str = Field("llm", description="llm, or the bandit policy version that chose.")


class RolloutRecord(BaseModel):
    """One task run through the lab, with its reward and everything evaluation needs."""

    rollout_id: str
    run_id: str
    stage: str
    task_id: str
    split: str = ""
    model_set: dict[str, str] = Field(default_factory=dict, description="Alias -> version.")
    status: Literal["succeeded", "failed"]
    error: str | None = None
    attempts: int = 1
    reward: float | None = None
    reward_components: dict[str, float] = Field(default_factory=dict)
    reward_breakdown: dict[str, float] = Field(
        default_factory=dict, description="component.criterion -> score (judge criteria, checks)."
    )
    reward_notes: dict[str, str] = Field(default_factory=dict, description="Why a scorer failed.")
    reward_failed: list[str] = Field(
        default_factory=list,
        description="Rewards that failed: a raising one is left out of the mean, a penalty counts.",
    )
    tool_failures: dict[str, int] = Field(
        default_factory=dict, description="Tool -> how many of its calls failed in this rollout."
    )
    expected_decision: str
    final_decision: str | None = None
    final_answer: str | None = None
    turns: int = 0
    latency_s: float = 0.0
    usage: dict[str, RoleUsage] = Field(default_factory=dict, description="Per role.")
    schema_valid: dict[str, bool] = Field(
        default_factory=dict, description="Role -> every output of the role parsed."
    )
    truncated: dict[str, bool] = Field(
        default_factory=dict, description="Role -> its last answer was cut at the token budget."
    )
    supervisor: SupervisorLog = Field(default_factory=SupervisorLog)
    state: dict[str, Any] = Field(default_factory=dict, description="Final lab state (JSON).")

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens over all roles."""
        return sum(u.prompt_tokens + u.completion_tokens for u in self.usage.values())
