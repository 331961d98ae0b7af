"""Compose the configured reward plugins into one scalar with a per-criterion breakdown."""

from __future__ import annotations

from pydantic import BaseModel, Field

from chimera_core.plugins import PluginRegistry, RewardInput, RewardScore


class ComposedReward(BaseModel):
    """The rollout's final reward and where it came from."""

    value: float
    components: dict[str, float] = Field(description="Plugin name -> its scalar.")
    breakdown: dict[str, float] = Field(description="'plugin.criterion' -> score.")
    notes: dict[str, str] = Field(default_factory=dict, description="Plugin -> why it failed.")


def compose_reward(registry: PluginRegistry, inp: RewardInput) -> ComposedReward:
    """Weighted mean over ``rewards.weights``; an unknown name is an error listing the known."""
    weights = inp.config.rewards.weights
    components: dict[str, float] = {}
    breakdown: dict[str, float] = {}
    notes: dict[str, str] = {}
    for name in weights:
        plugin = registry.reward(name)
        try:
            score: RewardScore = plugin.score(inp)
        except Exception as exc:  # a broken third-party reward must not kill the rollout
            score = RewardScore(value=0.0, failed=True, reason=f"{type(exc).__name__}: {exc}")
        components[name] = score.value
        breakdown.update({f"{name}.{k}": v for k, v in score.breakdown.items()})
        if score.reason:
            notes[name] = score.reason
    total = sum(weights.values())
    value = sum(components[n] * w for n, w in weights.items()) / total
    return ComposedReward(value=value, components=components, breakdown=breakdown, notes=notes)
