"""One real task end to end: vLLM (CPU build) with SmolLM2-135M behind every role.

Checks that the final state is complete and valid; it says nothing of scientific quality.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chimera_core.data.agent_outputs import (
    JuniorResearch,
    Protocol,
    RefinedHypothesis,
    ReviewDecision,
    SupervisorChoice,
    decoding_budget,
)
from chimera_core.data.pubmedqa import load_tasks
from chimera_core.lab import ConfigModelProvider, LabEvent, run_task, state_to_json
from chimera_core.lab.graph import role_spec

pytestmark = pytest.mark.slow

TASK_ID = "21645374"
MAX_TOKENS = 96  # short answers keep the run to a few minutes on 2 cores


def test_one_pubmedqa_task_through_vllm(live_config: Any, live_serving: Any) -> None:
    config = live_config
    task = next(t for t in load_tasks(config.data) if t.id == TASK_ID)
    events: list[LabEvent] = []
    endpoints = live_serving.endpoints({})
    start = time.perf_counter()
    state = run_task(
        task, config, ConfigModelProvider(config, endpoints), on_event=events.append, max_turns=10
    )
    seconds = time.perf_counter() - start

    roles = list(config.roles)
    finished = {e.node for e in events if e.kind == "end"}
    assert set(roles) <= finished
    assert state["final_decision"] in {"GO", "NO-GO"}
    assert state["final_answer"] in {"yes", "no", "maybe"}
    assert isinstance(state["final_rationale"], str)
    Protocol.model_validate(state["final_protocol"])
    RefinedHypothesis.model_validate(state["refined_hypothesis"])
    ReviewDecision.model_validate(state["peer_review"])
    ReviewDecision.model_validate(state["safety_review"])
    hypotheses = [JuniorResearch.model_validate(h) for h in state["initial_hypotheses"]]
    assert sorted(h.agent_name for h in hypotheses) == sorted(config.roles_of_tier("junior"))
    assert 0 <= state["selected_index"] < len(hypotheses)
    assert 9 <= state["turn_count"] <= 10 + 4
    assert set(state["schema_valid"]) == set(roles)
    for role in roles:
        usage = state["usage"][role]
        assert usage["calls"] >= 1 and usage["prompt_tokens"] > 0, role
        # tool-loop turns stop at max_tokens; the structured answer at its schema's budget
        schema = SupervisorChoice if role == "Supervisor" else role_spec(role, config).schema
        per_call = max(MAX_TOKENS, decoding_budget(schema))
        assert usage["completion_tokens"] <= usage["calls"] * per_call, role
    for error in state["errors"]:
        assert set(error) == {"role", "kind", "message", "raw"} and error["role"] in roles
    assert state["evidence"]["Geneticist"][0]["tool"] == "pubmed_search"
    assert f"PMID {TASK_ID}" not in json.dumps(state["evidence"])
    json.dumps(state_to_json(state))  # the whole state serialises
    print(f"\nlab run: {seconds:.0f} s, {sum(u['calls'] for u in state['usage'].values())} calls")
