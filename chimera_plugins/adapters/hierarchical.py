"""HierarchicalTraceAdapter: traced rollouts -> SFT conversations, RL triplets, bandit samples.

Juniors get their conversations (for SFT on success), seniors their LLM calls as triplets with
token ids (for GRPO/PPO), and the supervisor its logged choices (for the contextual bandit).
A trainable board role (the PI) gets both its conversations and its triplets, rewarded by the
decision reward (``rewards.decision_reward``: the task's label by default) instead of the
rollout's overall reward.
Roles are found by the LangGraph node name on the spans (Agent Lightning's ``agent_name``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from chimera_core.plugins import (
    BanditSample,
    ChimeraConfig,
    RLExample,
    SFTExample,
    TracedRollout,
    TrainingData,
)

LLM_CALL = r"openai\.chat\.completion"


def _role_regex(roles: Sequence[str]) -> str:
    # A node may wrap its call in a named sub-chain ("Role.repair"): match the prefix.
    return r"^(" + "|".join(re.escape(r) for r in roles) + r")(\.|$)"


def _role_call_ids(spans: Sequence[Any], role: str) -> set[str]:
    from agentlightning.adapter.triplet import TraceTree

    tree = TraceTree.from_spans(list(spans))
    tree.repair_hierarchy()
    calls = tree.find_llm_calls(
        llm_call_match=LLM_CALL,
        agent_match=_role_regex([role]),
        within_matching_subtree=None,
        within_reward=False,
        within_llm_call=False,
        existing_llm_call_response_ids=set(),
    )
    return {node.span.span_id for node, _agent in calls}


def role_conversations(spans: Sequence[Any], role: str) -> list[list[dict[str, Any]]]:
    """Each LLM call of a role in one rollout's spans as prompt messages plus the assistant
    reply, in the spans' order. ``spans``: Agent Lightning spans, or their stored JSON.
    """
    from agentlightning import Span

    return _conversations(
        [s if isinstance(s, Span) else Span.model_validate(s) for s in spans], role
    )


def _conversations(spans: Sequence[Any], role: str) -> list[list[dict[str, Any]]]:
    """Each LLM call of a role as prompt messages plus the assistant reply."""
    from agentlightning import TraceToMessages

    ids = _role_call_ids(spans, role)
    keep = [s for s in spans if s.span_id in ids or s.parent_id in ids]
    if not keep:
        return []
    return [list(rec["messages"]) for rec in TraceToMessages().adapt(keep)]


class HierarchicalTraceAdapter:
    """The built-in adapter: one pass over rollouts feeds all three trainers."""

    name = "hierarchical"

    def adapt(self, rollouts: Sequence[TracedRollout], config: ChimeraConfig) -> TrainingData:
        """Convert traced rollouts; failed rollouts contribute nothing."""
        from agentlightning import Span, TracerTraceToTriplet

        juniors = config.roles_of_tier("junior")
        seniors = config.roles_of_tier("senior")
        board = [r for r in config.roles_of_tier("board") if config.roles[r].trainable]
        data = TrainingData()
        for item in rollouts:
            rec = item.record
            if rec.status != "succeeded" or rec.reward is None:
                continue
            data.n_rollouts += 1
            # The supervisor's choice is in the record: the bandit needs no spans.
            sup = rec.supervisor
            if sup.hypotheses and sup.chosen is not None and sup.propensity:
                data.bandit.append(
                    BanditSample(
                        task_id=rec.task_id,
                        goal=str(rec.state.get("research_goal", "")),
                        hypotheses=sup.hypotheses,
                        chosen=sup.chosen,
                        propensity=sup.propensity,
                        reward=rec.reward,
                    )
                )
            spans = [Span.model_validate(s) for s in item.spans]
            data.n_spans += len(spans)
            if not spans:
                continue
            # The decision-maker learns from its own reward (the label by default).
            decided = rec.reward_components.get(config.rewards.decision_reward, 0.0)
            for role in [*juniors, *board]:
                for messages in _conversations(spans, role):
                    data.sft.append(
                        SFTExample(
                            role=role,
                            task_id=rec.task_id,
                            rollout_id=rec.rollout_id,
                            reward=decided if role in board else rec.reward,
                            messages=messages,
                        )
                    )
            if seniors or board:
                adapter = TracerTraceToTriplet(
                    agent_match=_role_regex([*seniors, *board]), llm_call_match=LLM_CALL
                )
                for trip in adapter.adapt(spans):
                    role = str(trip.metadata.get("agent_name", "")).split(".")[0]
                    data.rl.append(
                        RLExample(
                            role=role,
                            task_id=rec.task_id,
                            rollout_id=rec.rollout_id,
                            # A senior call shares the rollout's final reward (episode-level).
                            reward=decided if role in board else rec.reward,
                            prompt_messages=list(trip.prompt.get("raw_content") or []),
                            prompt_token_ids=list(trip.prompt.get("token_ids") or []),
                            response_text=_response_text(trip.response),
                            response_token_ids=list(trip.response.get("token_ids") or []),
                        )
                    )
        return data


def _response_text(response: dict[str, Any]) -> str:
    raw = response.get("raw_content")
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        return str(raw[0].get("content") or "")
    return str(raw or "")
