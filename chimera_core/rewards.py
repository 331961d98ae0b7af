"""Compose the configured reward plugins into one scalar with a per-criterion breakdown."""

from __future__ import annotations

from pydantic import BaseModel, Field

from chimera_core.errors import FaultError
from chimera_core.plugins import PluginRegistry, RewardInput, RewardScore


class ComposedReward(BaseModel):
    """The rollout's final reward and where it came from."""

    value: float
    components: dict[str, float] = Field(description="Plugin name -> its scalar.")
    breakdown: dict[str, float] = Field(description="'plugin.criterion' -> score.")
    notes: dict[str, str] = Field(default_factory=dict, description="Plugin -> why it failed.")
    failed: list[str] = Field(default_factory=list, description="Rewards that failed.")


def compose_reward(registry: PluginRegistry, inp: RewardInput) -> ComposedReward:
    """Weighted mean over ``rewards.weights``; an unknown name is an error listing the known.

    A reward that raises has no score: it is left out of the mean (renormalised over the
    rewards that scored), noted with its plugin and package, and listed in ``failed``; when no
    reward scored, a FaultError (the rollout fails). A reward that returns ``failed=True``
    chose its own penalty (the judge's ``judge_failure_score``): it counts, and is listed.
    """
    weights = inp.config.rewards.weights
    components: dict[str, float] = {}
    breakdown: dict[str, float] = {}
    notes: dict[str, str] = {}
    failed: list[str] = []
    for name in weights:
        plugin = registry.reward(name)
        try:
            score: RewardScore = plugin.score(inp)
        except Exception as exc:  # a broken third-party reward must not kill the rollout
            failed.append(name)
            notes[name] = f"{type(exc).__name__}: {exc} [{registry.origin('reward', name)}]"
            continue
        components[name] = score.value
        breakdown.update({f"{name}.{k}": v for k, v in score.breakdown.items()})
        if score.failed:
            failed.append(name)
        if score.reason:
            notes[name] = score.reason
    total = sum(weights[n] for n in components)
    if not components or total <= 0:
        why = "; ".join(f"{n}: {notes.get(n, 'weight 0')}" for n in weights)
        raise FaultError(f"no reward with a positive weight scored the rollout ({why})")
    value = sum(components[n] * weights[n] for n in components) / total
    return ComposedReward(
        value=value, components=components, breakdown=breakdown, notes=notes, failed=failed
    )
