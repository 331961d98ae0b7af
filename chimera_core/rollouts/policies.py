"""The supervisor's learned policy, as the lab's ``SupervisorPolicy``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chimera_core.lab.supervisor_policy import Advisor, Choice
from chimera_core.training.bandit import LinearBanditPolicy


class BanditSupervisorPolicy:
    """Greedy over the bandit's predicted rewards; the supervisor LLM is not consulted."""

    def __init__(self, policy: LinearBanditPolicy, version: str) -> None:
        self.policy = policy
        self.name = f"bandit:{version}"

    def choose(
        self, hypotheses: Sequence[str], state: Mapping[str, Any], advisor: Advisor
    ) -> Choice:
        """Pick the arm with the highest predicted final reward (probability 1)."""
        scores = self.policy.scores(str(state.get("research_goal", "")), hypotheses)
        index = int(np.argmax(scores))
        why = f"{self.name}: predicted reward {scores[index]:.3f}, best of {len(scores)}"
        return Choice(index, why, 1.0)
