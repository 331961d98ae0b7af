"""Reward: deterministic checks of the final protocol (no model involved)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chimera_core.plugins import RewardInput, RewardScore

_WORD = re.compile(r"[a-z][a-z0-9-]{3,}")
# Function words carry no grounding signal; kept short on purpose.
_STOP = frozenset(
    "this that with from were have been which their there these those than then into also "
    "will would should could study studies patients using used between during after before "
    "each other more most such only over under within without about group groups".split()
)
MIN_STEPS = 3
SPECIFIC_STEP_WORDS = 6
MAX_BUDGET_USD = 50_000_000.0
GROUNDED_FRACTION = 0.33  # a third of the content words found in the context counts as grounded


def content_words(text: str) -> set[str]:
    """Lower-cased content words of four letters or more."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def rubric_checks(protocol: Mapping[str, Any], context: str) -> dict[str, float]:
    """Each check in [0, 1]: steps, specificity, safety, budget, grounding in the context."""
    steps = [str(s) for s in protocol.get("steps") or []]
    specific = [s for s in steps if len(s.split()) >= SPECIFIC_STEP_WORDS]
    safety = [str(s) for s in protocol.get("safety_concerns") or [] if str(s).strip()]
    try:
        budget = float(protocol.get("budget_usd"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        budget = -1.0
    protocol_words = content_words(" ".join([str(protocol.get("title", "")), *steps]))
    context_words = content_words(context)
    overlap = len(protocol_words & context_words) / len(protocol_words) if protocol_words else 0.0
    return {
        "steps_present": min(1.0, len(steps) / MIN_STEPS),
        "steps_specific": len(specific) / len(steps) if steps else 0.0,
        "safety_addressed": 1.0 if safety else 0.0,
        "budget_numeric": 1.0 if 0.0 < budget <= MAX_BUDGET_USD else 0.0,
        "grounding_overlap": min(1.0, overlap / GROUNDED_FRACTION),
    }


class ProtocolRubric:
    """Mean of the deterministic checks of the final protocol."""

    name = "protocol_rubric"

    def score(self, inp: RewardInput) -> RewardScore:
        """Score the rollout's final protocol (or the last designed one)."""
        protocol = inp.state.get("final_protocol") or inp.state.get("experimental_protocol")
        if not isinstance(protocol, Mapping):
            return RewardScore(value=0.0, reason="no protocol produced")
        checks = rubric_checks(protocol, inp.task.context)
        return RewardScore(value=sum(checks.values()) / len(checks), breakdown=checks)
