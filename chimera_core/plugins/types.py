"""What plugins register and what they are given: tools, rewards, trace adapters, algorithms.

Each registered object has a ``name``; context is passed at call time, so one instance serves
every rollout. Third-party plugins implement these protocols exactly as the built-ins do.
``docs/plugins.md`` documents every type here with examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from chimera_core.config.models import ChimeraConfig
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.data.tasks import ResearchTask
from chimera_core.data.training_data import TrainingData
from chimera_core.logs import ContextLogger

Kind = Literal["tool", "reward", "adapter", "algorithm"]
KINDS: tuple[Kind, ...] = ("tool", "reward", "adapter", "algorithm")


# --- tools -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know when called: the config, the task and the role that asked."""

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


# --- rewards -----------------------------------------------------------------------------------


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
    """The finished rollout a reward scores.

    ``state`` is the lab's final state as JSON (see docs/plugins.md for its keys);
    ``shared_context`` is the system message every role of the rollout opened with, so a judge
    that starts its chat with it reuses the model server's prefix cache.
    """

    task: ResearchTask
    state: Mapping[str, Any]
    config: ChimeraConfig
    chat: ChatFn | None = None
    shared_context: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Reward(Protocol):
    """Scores a finished rollout in [0, 1]."""

    name: str

    def score(self, inp: RewardInput) -> RewardScore:
        """Score one rollout; on internal failure return a penalised score, never raise."""
        ...


# --- trace adapters ----------------------------------------------------------------------------


@dataclass
class TracedRollout:
    """A rollout record with its raw spans (Agent Lightning span dicts, JSON form)."""

    record: RolloutRecord
    spans: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class TraceAdapter(Protocol):
    """Turns stored rollouts (records and spans) into per-tier training data."""

    name: str

    def adapt(self, rollouts: Sequence[TracedRollout], config: ChimeraConfig) -> TrainingData:
        """Convert rollouts; failed rollouts contribute nothing."""
        ...


# --- algorithms --------------------------------------------------------------------------------


class AlgorithmOptions(BaseModel):
    """Base of an algorithm's options model: unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class OnlineLab:
    """The lab, ready for an online algorithm: an agent and the task inputs to roll out."""

    agent: Any = field(metadata={"doc": "An agentlightning LitAgent running the whole lab."})
    inputs: list[dict[str, Any]]
    role_match: str = field(metadata={"doc": "Regex of the trained roles' span names."})


ScoreCompletion = Callable[[str, str, str, str], float | None]
"""``score(role, task_id, text, reward_name)``: the named reward of a role's output, None when
the text does not parse as the role's output."""


@dataclass
class TrainRequest:
    """Everything an algorithm gets from its stage: data in, a directory to write out."""

    stage: str
    run_id: str
    alias: str = field(metadata={"doc": "The model alias (or policy) being trained."})
    config: ChimeraConfig
    options: Any = field(metadata={"doc": "The algorithm's options model, validated."})
    data: TrainingData
    tasks: Mapping[str, ResearchTask]
    output_dir: Path = field(metadata={"doc": "Save the adapter or policy here."})
    log: ContextLogger
    base_model: Path | None = None
    parent: Path | None = field(
        default=None, metadata={"doc": "The champion's adapter or policy dir; None for base."}
    )
    save_artifact: Callable[[str, bytes], str] = field(
        default=lambda name, data: "", metadata={"doc": "Store bytes under the stage; URI."}
    )
    score_completion: ScoreCompletion = field(default=lambda role, task, text, reward: None)
    online_lab: Callable[[int], AbstractContextManager[OnlineLab]] | None = None

    def roles(self) -> set[str]:
        """The roles the trained alias serves: an algorithm trains on their examples only."""
        return {name for name, role in self.config.roles.items() if role.model == self.alias}


class TrainResult(BaseModel):
    """What an algorithm returns: the directory it saved (or why not) and its metrics."""

    output_dir: Path | None = Field(None, description="The saved adapter/policy; None: skipped.")
    skipped: str | None = Field(None, description="Why nothing was trained.")
    metrics: dict[str, Any] = Field(default_factory=dict)
    data_sha256: str | None = Field(None, description="Digest of the examples trained on.")
    config: dict[str, Any] = Field(default_factory=dict, description="Recorded in the registry.")


@runtime_checkable
class Algorithm(Protocol):
    """A training algorithm for one tier (sft, grpo, verl, bandit...)."""

    name: str

    @property
    def options_model(self) -> type[AlgorithmOptions]:
        """The model of ``stages.<stage>.options`` (a class attribute in practice)."""
        ...

    def train(self, request: TrainRequest) -> TrainResult:
        """Train from the request's data, save into ``request.output_dir``, report."""
        ...


REQUIRED_ATTRS: dict[Kind, tuple[str, ...]] = {
    "tool": ("name", "description", "run"),
    "reward": ("name", "score"),
    "adapter": ("name", "adapt"),
    "algorithm": ("name", "options_model", "train"),
}
