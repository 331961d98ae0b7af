"""How the supervisor picks a junior hypothesis: one protocol that a learned policy can implement.

The default asks the supervisor's LLM. A learned bandit implements the same ``choose`` and may
ignore the LLM's advice (then no supervisor LLM call is made at all); ``EpsilonExplore`` wraps
any policy with uniform exploration and reports the true probability of the choice, which is
what off-policy training needs as the propensity.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable


class Choice(NamedTuple):
    """A supervisor decision: which hypothesis, why, and the probability it had."""

    selected_index: int
    justification: str
    probability: float


Advisor = Callable[[], Choice]
"""Asks the supervisor LLM (once, lazily) for its choice."""


@runtime_checkable
class SupervisorPolicy(Protocol):
    """Chooses among the juniors' hypotheses (texts, in state order)."""

    name: str

    def choose(
        self, hypotheses: Sequence[str], state: Mapping[str, Any], advisor: Advisor
    ) -> Choice:
        """Return the chosen index (0-based), a justification and its probability."""
        ...


class LLMPolicy:
    """The default: the supervisor LLM's own choice, deterministic (probability 1)."""

    name = "llm"

    def choose(
        self, hypotheses: Sequence[str], state: Mapping[str, Any], advisor: Advisor
    ) -> Choice:
        """Take the LLM's choice as it is."""
        return advisor()


class EpsilonExplore:
    """With probability epsilon pick uniformly at random, else follow the base policy."""

    def __init__(
        self, base: SupervisorPolicy, epsilon: float, rng: random.Random | None = None
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.base = base
        self.epsilon = epsilon
        self.rng = rng or random.Random()
        self.name = f"{base.name}+eps{epsilon:g}"

    def choose(
        self, hypotheses: Sequence[str], state: Mapping[str, Any], advisor: Advisor
    ) -> Choice:
        """Explore or exploit; the probability is that of the index finally chosen."""
        greedy = self.base.choose(hypotheses, state, advisor)
        k = len(hypotheses)
        if self.rng.random() < self.epsilon:
            index = self.rng.randrange(k)
            why = f"exploration: picked hypothesis {index} uniformly at random"
        else:
            index, why = greedy.selected_index, greedy.justification
        # P(index) = P(explore) / k + P(exploit) * P(base picks index); exact for a
        # deterministic base, a lower bound for a stochastic one.
        probability = self.epsilon / k + (1.0 - self.epsilon) * (
            greedy.probability if index == greedy.selected_index else 0.0
        )
        return Choice(index, why, probability)
