"""Reward: how much of the refined hypothesis is grounded in the task's context (no model)."""

from __future__ import annotations

from collections.abc import Mapping

from chimera_core.plugins import RewardInput, RewardScore
from chimera_plugins.rewards.protocol_rubric import GROUNDED_FRACTION, content_words


class HypothesisGrounding:
    """Share of the refined hypothesis's content words found in the context, scaled."""

    name = "hypothesis_grounding"

    def score(self, inp: RewardInput) -> RewardScore:
        """Score ``state["refined_hypothesis"]``; no hypothesis scores 0."""
        refined = inp.state.get("refined_hypothesis")
        text = refined.get("refined_hypothesis") if isinstance(refined, Mapping) else None
        words = content_words(str(text or ""))
        if not words:
            return RewardScore(value=0.0, reason="no refined hypothesis produced")
        overlap = len(words & content_words(inp.task.context)) / len(words)
        return RewardScore(
            value=min(1.0, overlap / GROUNDED_FRACTION), breakdown={"overlap": overlap}
        )
