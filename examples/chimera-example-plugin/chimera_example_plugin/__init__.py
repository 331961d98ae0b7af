"""Example Chimera plugin: a dose calculator tool and a step-brevity reward."""

from __future__ import annotations

import re

from chimera_core.plugins import RewardInput, RewardScore, ToolContext, hookimpl

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


class DoseCalculator:
    """Weight-based dosing: total dose in mg from body weight and mg/kg."""

    name = "dose_calculator"
    description = "Compute a weight-based dose. Input: 'weight_kg=70 dose_mg_per_kg=2.5'."

    def run(self, query: str, context: ToolContext) -> str:
        """Parse the two numbers and return the total dose, or say what is missing."""
        weight = re.search(r"weight_kg\s*=\s*" + _NUMBER, query)
        per_kg = re.search(r"dose_mg_per_kg\s*=\s*" + _NUMBER, query)
        if not weight or not per_kg:
            return "dose_calculator needs 'weight_kg=<number> dose_mg_per_kg=<number>'"
        total = float(weight.group(1)) * float(per_kg.group(1))
        return f"total dose: {total:g} mg"


class StepBrevity:
    """Rewards protocols whose steps are short enough to follow at the bench."""

    name = "step_brevity"
    max_words = 40

    def score(self, inp: RewardInput) -> RewardScore:
        """1.0 when every step has at most ``max_words`` words, less for each longer step."""
        protocol = inp.state.get("final_protocol") or {}
        steps = protocol.get("steps") or []
        if not steps:
            return RewardScore(value=0.0, reason="no protocol steps")
        short = sum(len(str(s).split()) <= self.max_words for s in steps)
        return RewardScore(value=short / len(steps), breakdown={"short_steps": short})


@hookimpl
def register_tools(register):  # type: ignore[no-untyped-def]
    register(DoseCalculator())


@hookimpl
def register_rewards(register):  # type: ignore[no-untyped-def]
    register(StepBrevity())
