"""Example Chimera plugin: a tool, a reward and both lifecycle hooks.

This is the plugin that docs/plugins.md builds step by step, from an empty folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from chimera_core.plugins import Reward, RewardInput, RewardScore, Tool, ToolContext, hookimpl

# The file the lifecycle hooks append to (one JSON line per event); unset: they do nothing.
# Not CHIMERA_*: Chimera reads those variables as config overrides.
EVENTS_ENV = "EXAMPLE_PLUGIN_EVENTS"

_WEIGHT = re.compile(r"(\d+(?:\.\d+)?)\s*kg\b", re.IGNORECASE)
_PER_KG = re.compile(r"(\d+(?:\.\d+)?)\s*mg\s*/\s*kg\b", re.IGNORECASE)


class DoseCalculator:
    """A tool: the total of a weight-based dose, e.g. '70 kg at 2.5 mg/kg' -> 175 mg."""

    name = "dose_calculator"
    description = "Total weight-based dose in mg. Ask like: '70 kg at 2.5 mg/kg'."

    def run(self, query: str, context: ToolContext) -> str:
        """The total dose, or a sentence saying what the query lacks (never an exception)."""
        weight = _WEIGHT.search(query)
        per_kg = _PER_KG.search(query)
        if weight is None or per_kg is None:
            return "dose_calculator: give a body weight and a dose, like '70 kg at 2.5 mg/kg'"
        total = float(weight.group(1)) * float(per_kg.group(1))
        return f"total dose: {total:g} mg ({weight.group(1)} kg at {per_kg.group(1)} mg/kg)"


class StepBrevity:
    """A reward: the share of the protocol's steps short enough to follow at the bench."""

    name = "step_brevity"
    max_words = 30

    def score(self, inp: RewardInput) -> RewardScore:
        """1.0 when every step has at most ``max_words`` words; 0.0 without a protocol."""
        protocol = inp.state.get("final_protocol") or inp.state.get("experimental_protocol")
        steps = protocol.get("steps") if isinstance(protocol, Mapping) else None
        if not steps:
            return RewardScore(value=0.0, reason="no protocol steps")
        short = sum(len(str(step).split()) <= self.max_words for step in steps)
        return RewardScore(
            value=short / len(steps),
            breakdown={"short_steps": float(short), "steps": float(len(steps))},
        )


def _append_event(event: dict[str, Any]) -> None:
    path = os.environ.get(EVENTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(event) + "\n")


@hookimpl
def register_tools(register: Callable[[Tool], None]) -> None:
    register(DoseCalculator())


@hookimpl
def register_rewards(register: Callable[[Reward], None]) -> None:
    register(StepBrevity())


@hookimpl
def on_rollout_finished(
    run_id: str, task_id: str, reward: float, record: Mapping[str, Any]
) -> None:
    _append_event(
        {
            "event": "rollout_finished",
            "run_id": run_id,
            "task_id": task_id,
            "reward": reward,
            "status": record.get("status"),
        }
    )


@hookimpl
def on_stage_finished(run_id: str, stage: str, outputs: Mapping[str, str]) -> None:
    _append_event(
        {"event": "stage_finished", "run_id": run_id, "stage": stage, "outputs": dict(outputs)}
    )
