"""Built-in reward plugins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chimera_core.plugins import hookimpl
from chimera_plugins.rewards.decision_alignment import DecisionAlignment
from chimera_plugins.rewards.llm_judge import LLMJudge
from chimera_plugins.rewards.protocol_rubric import ProtocolRubric


@hookimpl
def register_rewards(register: Callable[[Any], None]) -> None:
    """Register the built-in rewards."""
    register(LLMJudge())
    register(DecisionAlignment())
    register(ProtocolRubric())
