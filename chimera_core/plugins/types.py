"""What plugins register: tools, rewards, trace adapters and training algorithms.

Each is an object with a ``name``; context is passed at call time, so one instance serves
every rollout. Third-party plugins implement these protocols exactly as the built-ins do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from chimera_core.config.models import ChimeraConfig
from chimera_core.data.tasks import ResearchTask

Kind = Literal["tool", "reward", "adapter", "algorithm"]
KINDS: tuple[Kind, ...] = ("tool", "reward", "adapter", "algorithm")


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know when called: the config and the task being worked on."""

    config: ChimeraConfig
    task: ResearchTask | None = None
    role: str | None = None


@runtime_checkable
class Tool(Protocol):
    """A tool an agent can call with one free-text query."""

    name: str
    description: str

    def run(self, query: str, context: ToolContext) -> str:
        """Answer the query; return text for the agent (never raise for 'no results')."""
        ...


class RewardScore(BaseModel):
    """One reward plugin's verdict on one rollout."""

    value: float = Field(ge=0.0, le=1.0, description="Scalar in [0, 1].")
    breakdown: dict[str, float] = Field(default_factory=dict, description="Per-criterion scores.")
    failed: bool = Field(False, description="The scorer failed and a penalty was applied.")
    reason: str | None = Field(None, description="Why (e.g. the judge's failure).")


class ChatFn(Protocol):
    """Call a model alias with chat messages, return the reply text (for LLM judges)."""

    def __call__(
        self,
        alias: str,
        messages: list[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
    ) -> str:
        """``json_schema`` asks for a reply that follows it (OpenAI structured output)."""
        ...


@dataclass(frozen=True)
class RewardInput:
    """The finished rollout a reward scores."""

    task: ResearchTask
    state: Mapping[str, Any]
    config: ChimeraConfig
    chat: ChatFn | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Reward(Protocol):
    """Scores a finished rollout in [0, 1]."""

    name: str

    def score(self, inp: RewardInput) -> RewardScore:
        """Score one rollout; on internal failure return a penalised score, never raise."""
        ...


@runtime_checkable
class TraceAdapter(Protocol):
    """Turns stored rollouts (spans, rewards) into training data for the tiers."""

    name: str

    def adapt(self, rollouts: Any) -> Any:
        """Convert rollouts into per-tier training data."""
        ...


@runtime_checkable
class Algorithm(Protocol):
    """A training algorithm for one tier (sft, grpo, verl, bandit...)."""

    name: str

    def train(self, context: Any) -> Any:
        """Train from the stage context; return the produced version's record."""
        ...


REQUIRED_ATTRS: dict[Kind, tuple[str, ...]] = {
    "tool": ("name", "description", "run"),
    "reward": ("name", "score"),
    "adapter": ("name", "adapt"),
    "algorithm": ("name", "train"),
}
