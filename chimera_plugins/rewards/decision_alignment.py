"""Reward: does the PI's decision agree with the PubMedQA label?

The original rule: GO with label yes, or NO-GO with label no, is aligned; a "maybe" label can
never align under it. The exact rule compares the PI's yes/no/maybe answer with the label.
Both are always reported; ``rewards.alignment_mode`` picks which one is the reward.
"""

from __future__ import annotations

from chimera_core.plugins import RewardInput, RewardScore

_GO_FOR_LABEL = {"yes": "GO", "no": "NO-GO"}


def original_alignment(decision: str | None, label: str) -> bool:
    """GO<->yes, NO-GO<->no; never aligned for a 'maybe' label."""
    return decision is not None and _GO_FOR_LABEL.get(label) == decision


class DecisionAlignment:
    """1.0 when the decision (or answer, in exact mode) matches the label, else 0.0."""

    name = "decision_alignment"

    def score(self, inp: RewardInput) -> RewardScore:
        """Score one rollout against its task's label."""
        label = inp.task.expected_decision
        decision = inp.state.get("final_decision")
        answer = inp.state.get("final_answer")
        aligned = original_alignment(decision, label)
        exact = answer == label
        value = exact if inp.config.rewards.alignment_mode == "exact" else aligned
        reason = None
        if decision is None:
            reason = "no final decision"
        elif label == "maybe":
            reason = "label 'maybe' cannot align under the original GO/NO-GO rule"
        return RewardScore(
            value=float(value),
            breakdown={
                "aligned_original": float(aligned),
                "exact_answer": float(exact),
                "label_maybe": float(label == "maybe"),
            },
            reason=reason,
        )
