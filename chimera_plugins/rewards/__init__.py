"""Built-in reward plugins."""

from __future__ import annotations

from collections.abc import Callable

from chimera_core.plugins import Reward, hookimpl
from chimera_plugins.rewards.decision_alignment import DecisionAlignment
from chimera_plugins.rewards.hypothesis_grounding import HypothesisGrounding
from chimera_plugins.rewards.llm_judge import LLMJudge
from chimera_plugins.rewards.protocol_rubric import ProtocolRubric


@hookimpl
def register_rewards(register: Callable[[Reward], None]) -> None:
    """Register the built-in rewards."""
    register(LLMJudge())
    register(DecisionAlignment())
    register(ProtocolRubric())
    register(HypothesisGrounding())
