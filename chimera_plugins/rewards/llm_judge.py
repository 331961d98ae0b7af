"""Reward: an LLM judge scores the final protocol against the task's own context.

Criteria (0-1 each): novelty, feasibility, impact, clarity, groundedness (claims the context
does not support are penalised), efficiency (cost and time). The weighted mean is the reward.
The judge's JSON is parsed from the message content; when the call or the parse fails, every
criterion gets ``rewards.judge_failure_score`` and the reason is kept.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chimera_core.plugins import OutputError, RewardInput, RewardScore, parse_output

CRITERIA_HELP = {
    "novelty": "is the hypothesis or design new relative to the context?",
    "feasibility": "can a real lab run it with the stated steps and budget?",
    "impact": "would the answer matter for patients or science?",
    "clarity": "are steps specific, ordered and unambiguous?",
    "groundedness": "is every claim supported by the context? (penalise unsupported claims)",
    "efficiency": "is the cost and time reasonable for what it tests?",
}


class JudgeScores(BaseModel):
    """The judge's verdict: one score per criterion in [0, 1] (0-10 scales are rescaled)."""

    model_config = ConfigDict(extra="ignore")

    novelty: float = Field(ge=0, le=1)
    feasibility: float = Field(ge=0, le=1)
    impact: float = Field(ge=0, le=1)
    clarity: float = Field(ge=0, le=1)
    groundedness: float = Field(ge=0, le=1)
    efficiency: float = Field(ge=0, le=1)

    @field_validator("*", mode="before")
    @classmethod
    def _rescale(cls, value: Any) -> Any:
        # Small judges often answer on a 0-10 or 0-100 scale despite the instruction.
        try:
            number = float(value)
        except (TypeError, ValueError):
            return value
        if 1 < number <= 10:
            return number / 10
        if 10 < number <= 100:
            return number / 100
        return number


def _task_message(inp: RewardInput) -> str:
    return f"Research question: {inp.task.goal}\n\nStudy context:\n{inp.task.context}"


def judge_messages(inp: RewardInput) -> list[dict[str, str]]:
    """The judge's prompt: the lab's shared task message, criteria, the protocol and decision."""
    protocol = inp.state.get("final_protocol") or inp.state.get("experimental_protocol") or {}
    criteria = "\n".join(f"- {name}: {text}" for name, text in CRITERIA_HELP.items())
    # No example scores: a small judge copies them verbatim whatever the protocol.
    keys = ", ".join(CRITERIA_HELP)
    return [
        # Byte-identical to the lab's first message on this task: the judge's call (same base
        # model) reuses the roles' cached prefix.
        {"role": "system", "content": inp.shared_context or _task_message(inp)},
        {
            "role": "system",
            "content": "You are a strict scientific reviewer. Score the lab's protocol for the "
            f"research question above on each criterion from 0 (worst) to 1 (best):\n{criteria}\n"
            f"Answer with one JSON object only, with the keys {keys} and decimal scores.",
        },
        {
            "role": "user",
            "content": f"Protocol:\n{json.dumps(protocol, indent=1)}\n\n"
            f"Decision: {inp.state.get('final_decision')} "
            f"(answer: {inp.state.get('final_answer')})",
        },
    ]


class LLMJudge:
    """Weighted mean of the judge's six criteria (weights from ``rewards.judge_criteria``)."""

    name = "llm_judge"

    def _penalty(self, inp: RewardInput, reason: str) -> RewardScore:
        score = inp.config.rewards.judge_failure_score
        return RewardScore(
            value=score,
            breakdown=dict.fromkeys(inp.config.rewards.judge_criteria, score),
            failed=True,
            reason=reason,
        )

    def score(self, inp: RewardInput) -> RewardScore:
        """Ask the judge model; penalise (never raise) when it fails."""
        if inp.chat is None:
            return self._penalty(inp, "no judge model available to this rollout")
        if not (inp.state.get("final_protocol") or inp.state.get("experimental_protocol")):
            return self._penalty(inp, "no protocol to judge")
        try:
            reply = inp.chat(
                inp.config.rewards.judge_model,
                judge_messages(inp),
                json_schema=JudgeScores.model_json_schema(),
            )
        except Exception as exc:  # a judge outage must not kill the rollout
            return self._penalty(inp, f"judge call failed: {type(exc).__name__}: {exc}"[:300])
        try:
            scores = parse_output(reply, JudgeScores)
        except OutputError as exc:
            return self._penalty(inp, f"judge reply unusable: {exc}"[:300])
        weights = inp.config.rewards.judge_criteria
        values = scores.model_dump()
        total = sum(weights.values())
        value = sum(values[k] * w for k, w in weights.items()) / total
        return RewardScore(value=value, breakdown={k: values[k] for k in weights})
