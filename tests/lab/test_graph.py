"""Every route of the workflow, driven by scripted chat models (no server, no network)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from chimera_core.config import ChimeraConfig, load_config
from chimera_core.data import ResearchTask
from chimera_core.errors import ConfigError
from chimera_core.lab import (
    Choice,
    ConfigModelProvider,
    EpsilonExplore,
    LabEvent,
    LLMPolicy,
    build_graph,
    run_task,
    state_to_json,
)
from chimera_core.lab.graph import LabGraph
from chimera_core.lab.models import Endpoint
from chimera_core.lab.prompts import shared_task_message, system_prompt
from chimera_core.lab.state import AgentState
from tests.lab.scripted import (
    GOOD,
    JUNIORS,
    FakeTools,
    ScriptedChatModel,
    ScriptedProvider,
    review,
    tool_call,
)

TASK = ResearchTask(
    id="999",
    goal="Does drug X lower marker Y in adults?",
    context="Adults given drug X had lower marker Y than controls after 12 weeks.",
    expected_decision="yes",
)
BAD = "I think the answer is complicated and I will not give JSON."


@pytest.fixture(scope="module")
def config() -> ChimeraConfig:
    # The routes below are scripted for the default turn limit, whatever the profile says.
    return load_config("local", environ={"CHIMERA_STAGES__GATHER__MAX_TURNS": "15"})


@pytest.fixture(scope="module")
def graph(config: ChimeraConfig) -> LabGraph:
    return build_graph(config)


def _run(
    config: ChimeraConfig,
    graph: LabGraph,
    provider: Any,
    events: list[LabEvent] | None = None,
    **kwargs: Any,
) -> tuple[AgentState, FakeTools]:
    tools = FakeTools()
    state = run_task(
        TASK,
        config,
        provider,
        graph=graph,
        tools=tools,
        on_event=events.append if events is not None else None,
        **kwargs,
    )
    return state, tools


def _ends(events: list[LabEvent]) -> list[str]:
    return [e.node for e in events if e.kind == "end"]


def test_happy_path_runs_every_role_once_with_parallel_juniors(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    provider = ScriptedProvider()
    events: list[LabEvent] = []
    state, tools = _run(config, graph, provider, events)
    order = _ends(events)
    assert set(order[:3]) == set(JUNIORS)  # the first superstep: all three juniors
    assert order[3:] == [
        "Supervisor",
        "HypothesisRefiner",
        "ProtocolDesigner",
        "PeerReviewer",
        "SafetyOfficer",
        "PrincipalInvestigator",
    ]
    assert sorted(h["agent_name"] for h in state["initial_hypotheses"]) == sorted(JUNIORS)
    assert all(h["supporting_papers"] == ["11111111"] for h in state["initial_hypotheses"])
    assert state["selected_index"] == 1
    assert state["selected_hypothesis"] == state["initial_hypotheses"][1]
    assert state["supervisor_policy"] == "llm" and state["supervisor_probability"] == 1.0
    assert state["final_decision"] == "GO" and state["final_answer"] == "yes"
    assert state["final_protocol"] == state["experimental_protocol"]
    assert state["final_protocol"]["budget_usd"] == 50000
    assert state["turn_count"] == 9 and state["errors"] == []
    assert all(state["schema_valid"].values()) and len(state["schema_valid"]) == 9
    assert state["usage"]["Geneticist"]["calls"] == 1
    assert state["usage"]["Geneticist"]["prompt_tokens"] == 10
    # Evidence from the role's own tools was put in its prompt (small models cannot call tools).
    prompt = provider.models["Geneticist"].prompts[0][2].content
    assert "[pubmed_search] PMID 11111111" in prompt and "[gene_ontology_lookup]" in prompt
    assert "Does drug X lower marker Y" in prompt
    assert TASK.context in provider.models["Geneticist"].prompts[0][0].content
    assert {r for _, r in tools.tools["clinical_trials_search"].queries} == {
        "Pharmacologist",
        "ProtocolDesigner",
    }
    # The label never reaches a prompt.
    for model in provider.models.values():
        for prompt_msgs in model.prompts:
            assert "expected_decision" not in str([m.content for m in prompt_msgs])
    # The task, the role's instructions, then the role's request: decoding under the role's
    # schema makes a worked example unnecessary; the transcript holds the task once.
    first = provider.models["Geneticist"].prompts[0]
    assert [m.type for m in first] == ["system", "system", "human"]
    assert first[1].content == system_prompt("Geneticist", "junior")
    assert not any("aerobic exercise" in str(m.content) for m in first)
    transcript = state_to_json(state)["messages"]
    assert transcript[0]["type"] == "system" and transcript[0]["content"] == first[0].content
    assert [m["content"] for m in transcript].count(first[0].content) == 1


def test_without_schema_decoding_a_worked_example_teaches_the_format(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    provider = ScriptedProvider()
    state, _ = _run(config, graph, provider, json_mode=False)
    first = provider.models["Geneticist"].prompts[0]
    assert [m.type for m in first] == ["system", "system", "human", "ai", "human"]
    assert "aerobic exercise" in first[2].content and "aerobic exercise" in first[3].content
    # The transcript leaves the example out.
    transcript = state_to_json(state)["messages"]
    assert not any("aerobic exercise" in str(m["content"]) for m in transcript)


def test_every_call_of_a_rollout_opens_with_the_same_task_message(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    # Tool rounds, repair requests and revision visits: every kind of repeated call.
    provider = ScriptedProvider(
        {
            "Pharmacologist": [
                tool_call("clinical_trials_search", "drug X trials", "c1"),
                tool_call("pubmed_search", "drug X marker Y", "c2"),
                GOOD["Pharmacologist"],
            ],
            "Supervisor": [BAD],
            "HypothesisRefiner": [BAD],
            "SafetyOfficer": [review("REVISE", "CRITICAL")],
            "PrincipalInvestigator": [BAD],
        }
    )
    state, _ = _run(config, graph, provider, offer_tools=True)
    assert provider.calls("Pharmacologist") == 3 and provider.calls("Supervisor") == 2
    assert provider.calls("HypothesisRefiner") == 3  # repaired, then revised
    firsts = [prompt[0] for role in ROLES for prompt in provider.models[role].prompts]
    assert len(firsts) == sum(provider.calls(role) for role in ROLES) > len(ROLES)
    expected = shared_task_message(TASK.goal, TASK.context)
    assert all(m.type == "system" and m.content == expected for m in firsts)
    # Only the role's own messages differ; they come after the task.
    for role in ROLES:
        override = config.roles[role].prompt
        for prompt in provider.models[role].prompts:
            assert prompt[1].content == system_prompt(role, config.roles[role].tier, override)
            assert not any(TASK.context in str(m.content) for m in prompt[1:])
    assert state["final_decision"] in {"GO", "NO-GO"}


def test_a_role_prompt_override_keeps_the_task_first(config: ChimeraConfig) -> None:
    role = config.roles["PeerReviewer"].model_copy(update={"prompt": "Review tersely."})
    custom = config.model_copy(update={"roles": {**config.roles, "PeerReviewer": role}})
    provider = ScriptedProvider()
    run_task(TASK, custom, provider, tools=FakeTools())
    (prompt,) = provider.models["PeerReviewer"].prompts
    assert prompt[0].content == provider.models["Geneticist"].prompts[0][0].content
    assert prompt[1].content == "Review tersely."
    assert "JSON" in prompt[-1].content  # the format instructions stay in the request


def test_tool_loop_returns_results_to_the_calling_agent(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    provider = ScriptedProvider(
        {
            "Pharmacologist": [
                tool_call("clinical_trials_search", "drug X trials", "c1"),
                tool_call("pubmed_search", "drug X marker Y", "c2"),
                GOOD["Pharmacologist"],
            ],
            "ProtocolDesigner": [tool_call("pubmed_search", "protocol designs", "c3")],
        }
    )
    events: list[LabEvent] = []
    state, tools = _run(config, graph, provider, events, offer_tools=True)
    order = _ends(events)
    # Pharmacologist -> tools -> Pharmacologist, twice, while the other juniors are done.
    assert order.count("Pharmacologist") == 3 and order.count("tools") == 3
    assert order.index("Supervisor") > max(i for i, n in enumerate(order) if n == "Pharmacologist")
    assert order.count("Supervisor") == 1  # deferred until every junior finished
    designer = [i for i, n in enumerate(order) if n == "ProtocolDesigner"]
    assert len(designer) == 2 and order[designer[0] + 1] == "tools"
    second = provider.models["Pharmacologist"].prompts[1]
    assert isinstance(second[-2], AIMessage) and second[-2].tool_calls
    assert isinstance(second[-1], ToolMessage) and second[-1].tool_call_id == "c1"
    assert "evidence from clinical_trials_search" in second[-1].content
    assert ("drug X trials", "Pharmacologist") in tools.tools["clinical_trials_search"].queries
    assert provider.models["Pharmacologist"].bound_tools  # tools were offered to the model
    assert state["scratchpads"]["Pharmacologist"] == []  # emptied after the answer
    assert len(state["evidence"]["Pharmacologist"]) == 2 + 2  # evidence step + two calls
    assert state["turn_count"] == 9 + 2 + 1
    tool_events = [(e.node, e.summary) for e in events if e.kind == "tool"]
    assert ("Pharmacologist", "clinical_trials_search: drug X trials") in tool_events


def test_models_are_not_offered_tools_unless_their_alias_says_so(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    provider = ScriptedProvider({"Geneticist": [tool_call("pubmed_search", "x")]})
    state, tools = _run(config, graph, provider)
    assert provider.models["Geneticist"].bound_tools == []
    # The tool call is not honoured; its empty content is repaired like any unusable answer.
    assert provider.calls("Geneticist") == 2 and state["schema_valid"]["Geneticist"] is True
    assert len(tools.tools["pubmed_search"].queries) == 5  # the evidence step still ran


def test_tool_not_allowed_for_role_is_reported_to_the_agent(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    provider = ScriptedProvider({"Geneticist": [tool_call("clinical_trials_search", "x")]})
    state, _ = _run(config, graph, provider, offer_tools=True)
    reply = provider.models["Geneticist"].prompts[1][-1]
    assert isinstance(reply, ToolMessage) and "not available to Geneticist" in reply.content
    assert any(e["kind"] == "tool" and e["role"] == "Geneticist" for e in state["errors"])


def test_tool_loop_is_bounded_per_visit(config: ChimeraConfig, graph: LabGraph) -> None:
    loop = [tool_call("pubmed_search", f"q{i}", f"c{i}") for i in range(10)]
    provider = ScriptedProvider({"Geneticist": [*loop]})
    provider.models["Geneticist"].fallback = GOOD["Geneticist"]
    state, _ = _run(config, graph, provider, max_tool_rounds=2, offer_tools=True)
    # Two tool rounds, then a call without tools whose (tool-call) reply is unusable JSON:
    # repaired from the next queued reply, which is again a tool call, so the default is used.
    assert provider.calls("Geneticist") == 2 + 1 + 1
    assert provider.models["Geneticist"].prompts[2][-1].type == "tool"
    assert state["schema_valid"]["Geneticist"] is False


def test_critical_review_goes_back_to_the_refiner(config: ChimeraConfig, graph: LabGraph) -> None:
    provider = ScriptedProvider({"SafetyOfficer": [review("REVISE", "CRITICAL")]})
    events: list[LabEvent] = []
    state, _ = _run(config, graph, provider, events)
    order = _ends(events)
    tail = order[order.index("Supervisor") + 1 :]
    assert tail == [
        "HypothesisRefiner",
        "ProtocolDesigner",
        "PeerReviewer",
        "SafetyOfficer",
        "HypothesisRefiner",
        "ProtocolDesigner",
        "PeerReviewer",
        "SafetyOfficer",
        "PrincipalInvestigator",
    ]
    second_refine = provider.models["HypothesisRefiner"].prompts[1][2].content
    assert "asked for a revision" in second_refine and "CRITICAL" in second_refine
    assert [r["role"] for r in state["revisions"]] == ["HypothesisRefiner", "ProtocolDesigner"]


def test_major_review_goes_back_to_the_designer(config: ChimeraConfig, graph: LabGraph) -> None:
    provider = ScriptedProvider({"PeerReviewer": [review("REVISE", "MAJOR")]})
    events: list[LabEvent] = []
    _run(config, graph, provider, events)
    tail = _ends(events)[_ends(events).index("Supervisor") + 1 :]
    assert tail == [
        "HypothesisRefiner",
        "ProtocolDesigner",
        "PeerReviewer",
        "SafetyOfficer",
        "ProtocolDesigner",
        "PeerReviewer",
        "SafetyOfficer",
        "PrincipalInvestigator",
    ]
    redesign = provider.models["ProtocolDesigner"].prompts[1][2].content
    assert "Your previous protocol" in redesign and "MAJOR" in redesign
    assert provider.calls("HypothesisRefiner") == 1


def test_critical_wins_over_major_and_approve_ignores_severity(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    provider = ScriptedProvider(
        {
            "PeerReviewer": [review("REVISE", "MAJOR")],
            "SafetyOfficer": [review("REVISE", "CRITICAL"), review("APPROVE", "CRITICAL")],
        }
    )
    state, _ = _run(config, graph, provider)
    assert provider.calls("HypothesisRefiner") == 2
    assert provider.calls("ProtocolDesigner") == 2
    assert state["final_decision"] == "GO"


def test_turn_limit_cuts_revision_loops_and_goes_to_the_pi(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    provider = ScriptedProvider()
    provider.models["SafetyOfficer"].fallback = review("REVISE", "MAJOR")
    events: list[LabEvent] = []
    state, _ = _run(config, graph, provider, events, max_turns=12)
    order = _ends(events)
    # 3 juniors + supervisor + 4 (refine..safety) = 8; each MAJOR loop adds 3 turns.
    assert order.count("ProtocolDesigner") == 3
    assert order[-1] == "PrincipalInvestigator" and order.count("PrincipalInvestigator") == 1
    assert state["turn_count"] == 15  # 14 at the cut-off, plus the PI
    assert state["final_decision"] == "GO"


def test_turn_limit_stops_tool_loops(config: ChimeraConfig, graph: LabGraph) -> None:
    loop = [tool_call("pubmed_search", f"q{i}", f"c{i}") for i in range(3)]
    provider = ScriptedProvider({"HypothesisRefiner": loop})
    state, _ = _run(config, graph, provider, max_turns=6, max_tool_rounds=10, offer_tools=True)
    # At turn 5 of 6 the refiner is called without tools and must answer.
    assert provider.calls("HypothesisRefiner") <= 3
    assert state["final_decision"] in {"GO", "NO-GO"}


ROLES = [*JUNIORS, *GOOD.keys() - set(JUNIORS)]


@pytest.mark.parametrize("role", sorted(ROLES))
def test_malformed_output_is_repaired_once(
    config: ChimeraConfig, graph: LabGraph, role: str
) -> None:
    provider = ScriptedProvider({role: [BAD, f"Sure! ```json\n{GOOD[role]}\n```"]})
    state, _ = _run(config, graph, provider)
    repair = provider.models[role].prompts[1][-1]
    assert isinstance(repair, HumanMessage) and "could not be used" in repair.content
    assert "no JSON object found" in repair.content
    assert state["schema_valid"][role] is True
    assert state["errors"] == []
    assert state["usage"][role]["calls"] == 2


@pytest.mark.parametrize("role", sorted(ROLES))
def test_malformed_output_twice_uses_a_safe_default(
    config: ChimeraConfig, graph: LabGraph, role: str
) -> None:
    provider = ScriptedProvider({role: [BAD, '{"nonsense": true}']})
    state, _ = _run(config, graph, provider)
    assert state["schema_valid"][role] is False
    errors = [e for e in state["errors"] if e["role"] == role]
    assert len(errors) == 1 and errors[0]["kind"] == "parse"
    assert "no JSON object found" in errors[0]["message"]
    assert "does not match the schema" in errors[0]["message"]
    # The rollout still finished with a complete, valid final state.
    assert state["final_decision"] in {"GO", "NO-GO"}
    assert state["final_answer"] in {"yes", "no", "maybe"}
    assert state["final_protocol"]["steps"]
    assert len(state["initial_hypotheses"]) == 3
    if role == "PrincipalInvestigator":
        assert (state["final_decision"], state["final_answer"]) == ("NO-GO", "maybe")
    if role == "Supervisor":
        assert state["selected_index"] == 0
    if role in JUNIORS:
        mine = next(h for h in state["initial_hypotheses"] if h["agent_name"] == role)
        assert mine["hypothesis"] == BAD  # the model's own prose, kept as its hypothesis
        assert mine["supporting_papers"] == ["11111111"]  # PMIDs from its evidence
    if role in {"PeerReviewer", "SafetyOfficer"}:
        assert provider.calls("ProtocolDesigner") == 1  # a failed review triggers no loop


def test_copied_example_and_out_of_range_choice_are_rejected(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    import json

    from chimera_core.lab.prompts import EXAMPLES

    provider = ScriptedProvider(
        {
            "Supervisor": ['{"selected_index": 3}', '{"selected_index": 2}'],
            "HypothesisRefiner": [json.dumps(EXAMPLES["HypothesisRefiner"])],
        }
    )
    state, _ = _run(config, graph, provider)
    assert state["selected_index"] == 2
    assert "between 0 and 2" in provider.models["Supervisor"].prompts[1][-1].content
    assert "repeated the example" in provider.models["HypothesisRefiner"].prompts[1][-1].content
    assert state["refined_hypothesis"]["refined_hypothesis"] == "X lowers Y in adults"


class FixedPolicy:
    """Always the last hypothesis; never asks the LLM."""

    name = "fixed-last"

    def choose(self, hypotheses: Sequence[str], state: Mapping[str, Any], advisor: Any) -> Choice:
        return Choice(len(hypotheses) - 1, "always the last", 0.5)


def test_supervisor_policy_override_skips_the_llm(config: ChimeraConfig, graph: LabGraph) -> None:
    provider = ScriptedProvider()
    state, _ = _run(config, graph, provider, supervisor_policy=FixedPolicy())
    assert provider.calls("Supervisor") == 0
    assert state["selected_index"] == 2
    assert state["supervisor_policy"] == "fixed-last"
    assert state["supervisor_probability"] == 0.5
    assert state["supervisor_justification"] == "always the last"
    assert "Supervisor" not in state["usage"]


def test_epsilon_explore_reports_the_probability_of_its_choice() -> None:
    def advisor() -> Choice:
        return Choice(1, "llm", 1.0)

    hyps = ["a", "b", "c", "d"]
    always = EpsilonExplore(LLMPolicy(), 1.0, random.Random(0))
    never = EpsilonExplore(LLMPolicy(), 0.0, random.Random(0))
    assert never.choose(hyps, {}, advisor) == Choice(1, "llm", 1.0)
    picks = [always.choose(hyps, {}, advisor) for _ in range(200)]
    assert {p.selected_index for p in picks} == {0, 1, 2, 3}
    assert all(p.probability == pytest.approx(0.25) for p in picks)
    half = EpsilonExplore(LLMPolicy(), 0.5, random.Random(1))
    for p in (half.choose(hyps, {}, advisor) for _ in range(50)):
        assert p.probability == pytest.approx(0.625 if p.selected_index == 1 else 0.125)


def test_trainable_roles_are_swapped_per_rollout_without_rebuilding(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    endpoint = Endpoint("http://127.0.0.1:9/v1", "chimera-senior", "key")
    base = ConfigModelProvider(config, dict.fromkeys(config.models, endpoint))
    trained = ScriptedChatModel(replies=[], fallback="")
    swapped = base.with_trainable(trained)
    assert swapped.for_role("HypothesisRefiner") is trained
    assert swapped.for_role("ProtocolDesigner") is trained
    assert swapped.for_role("Geneticist") is base.for_role("Geneticist")
    assert base.for_role("HypothesisRefiner") is not trained
    refiner = base.for_role("HypothesisRefiner")
    assert refiner.model_name == "chimera-senior"  # type: ignore[attr-defined]
    assert refiner.temperature == 0.1  # type: ignore[attr-defined]
    assert base.for_role("Supervisor").temperature == 0.0  # type: ignore[attr-defined]
    # Two rollouts on one compiled graph, each with its own senior model.
    for answer in ("yes", "no"):
        provider = ScriptedProvider()
        senior = ScriptedChatModel(
            replies=[GOOD["HypothesisRefiner"], GOOD["ProtocolDesigner"]], fallback=""
        )
        provider.models["HypothesisRefiner"] = senior
        provider.models["ProtocolDesigner"] = senior
        provider.models["PrincipalInvestigator"].replies = [
            f'{{"final_decision": "GO", "answer": "{answer}"}}'
        ]
        state, _ = _run(config, graph, provider)
        assert len(senior.prompts) == 2 and state["final_answer"] == answer


def test_vllm_alias_without_an_endpoint_is_a_clear_error(config: ChimeraConfig) -> None:
    from chimera_core.errors import ChimeraError

    with pytest.raises(ChimeraError, match="vLLM server, but no endpoint"):
        ConfigModelProvider(config).for_role("Geneticist")


def test_config_without_a_required_role_is_rejected(config: ChimeraConfig) -> None:
    roles = {k: v for k, v in config.roles.items() if k != "SafetyOfficer"}
    with pytest.raises(ConfigError, match="SafetyOfficer"):
        build_graph(config.model_copy(update={"roles": roles}))


def test_unknown_tool_fails_before_any_model_call(config: ChimeraConfig) -> None:
    from chimera_core.errors import PluginError

    role = config.roles["Geneticist"].model_copy(update={"tools": ["no_such_tool"]})
    bad = config.model_copy(update={"roles": {**config.roles, "Geneticist": role}})
    provider = ScriptedProvider()
    with pytest.raises(PluginError, match="no_such_tool"):
        run_task(TASK, bad, provider, tools=FakeTools())
    assert provider.calls("Geneticist") == 0


def test_a_failing_tool_is_recorded_by_tool_with_its_plugin_and_counted(
    config: ChimeraConfig, graph: LabGraph
) -> None:
    from chimera_core.rollouts.agent import _tool_failures

    tools = FakeTools()

    def broken(query: str, context: Any) -> str:
        raise TimeoutError("index offline")

    tools.tools["pubmed_search"].run = broken  # type: ignore[method-assign]
    provider = ScriptedProvider({"Geneticist": [tool_call("clinical_trials_search", "x")]})
    state = run_task(TASK, config, provider, graph=graph, tools=tools, offer_tools=True)
    failed = [e for e in state["errors"] if e["kind"] == "tool"]
    pubmed = [e for e in failed if e.get("name") == "pubmed_search"]
    assert pubmed and all(
        "TimeoutError: index offline" in e["message"] and "(package " in e["message"]
        for e in pubmed
    )
    assert any(e.get("name") == "clinical_trials_search" for e in failed)  # not allowed there
    counts = _tool_failures(dict(state))
    assert counts["pubmed_search"] == len(pubmed) and counts["clinical_trials_search"] == 1
