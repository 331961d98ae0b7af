"""One rollout of ``MedicalResearchAgent`` without Agent Lightning's runner: the record it writes.

The agent's ``rollout(task, resources, rollout)`` is called directly, as a runner would, with
stand-ins for what the runner hands it: proxy resources (each routes an alias to a model name at
a URL, here a fake OpenAI server with canned replies per role), the rollout ids, and a tracer
whose LangChain handler counts model calls. Whatever happens, a ``RolloutRecord`` lands at the
spec's record key: rewarded on success, with the reason on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from chimera_core.rollouts.agl_env import prepare_agl_environment

prepare_agl_environment()  # before Agent Lightning is imported (by the agent module)

from chimera_core.artifacts import LocalArtifactStore  # noqa: E402
from chimera_core.config import ChimeraConfig, load_config  # noqa: E402
from chimera_core.data import ResearchTask  # noqa: E402
from chimera_core.data.rollouts import RolloutRecord  # noqa: E402
from chimera_core.lab.models import Endpoint  # noqa: E402
from chimera_core.lab.supervisor_policy import EpsilonExplore, LLMPolicy  # noqa: E402
from chimera_core.plugins import RewardInput, build_registry  # noqa: E402
from chimera_core.plugins.manager import PluginInfo  # noqa: E402
from chimera_core.rollouts import agent as agent_module  # noqa: E402
from chimera_core.rollouts.agent import (  # noqa: E402
    TRAINED_RESOURCE,
    MedicalResearchAgent,
    RolloutInput,
)
from chimera_core.rollouts.policies import BanditSupervisorPolicy  # noqa: E402
from chimera_core.rollouts.storage import load_record, record_key, spans_key  # noqa: E402
from chimera_core.training.bandit import LinearBanditPolicy  # noqa: E402
from tests.lab.fake_openai import FakeOpenAI, fake_openai_server  # noqa: E402
from tests.net import free_port  # noqa: E402

PREFIX = "runs/r1/gather/rollouts"
TASK = ResearchTask(
    id="999",
    goal="Does drug X lower marker Y in adults?",
    context="Adults given drug X had lower marker Y than controls after 12 weeks.",
    expected_decision="yes",
    split="train",
)
HYPOTHESES = ["Geneticist hypothesis", "Neurologist hypothesis", "Pharmacologist hypothesis"]


class CountingHandler(BaseCallbackHandler):
    """What the tracer's LangChain handler sees: one start per chat model call."""

    def __init__(self) -> None:
        self.chat_starts = 0

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.chat_starts += 1


@dataclass
class StubRunner:
    """The runner the agent asks for its tracer (``LitAgent.get_tracer``)."""

    handler: CountingHandler = field(default_factory=CountingHandler)

    @property
    def tracer(self) -> Any:
        return SimpleNamespace(get_langchain_handler=lambda: self.handler)


@dataclass
class Route:
    """A proxy resource: the rollout's URL for one served model name."""

    url: str
    model: str
    asked: list[tuple[str, str]] = field(default_factory=list)

    def get_base_url(self, rollout_id: str, attempt_id: str) -> str:
        self.asked.append((rollout_id, attempt_id))
        return self.url


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with fake_openai_server() as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, pubmedqa_file: Path) -> ChimeraConfig:
    """The local profile: artifacts in tmp, offline tools on the fixture data, fast faults."""
    overrides: dict[str, Any] = {
        "artifacts.local_root": str(tmp_path / "artifacts"),
        "data.source": "file",
        "data.file": str(pubmedqa_file),
        "stages.gather.max_attempts": 2,
        "stages.gather.retry_backoff_s": 0.0,
    }
    for alias in ("junior", "senior", "board", "pi", "judge"):
        overrides[f"models.{alias}.max_retries"] = 0
        overrides[f"models.{alias}.timeout_s"] = 20.0
    return load_config("local", environ={}, overrides=overrides)


@dataclass
class Lab:
    """An agent with its stub runner, and the store its records go to."""

    agent: MedicalResearchAgent
    runner: StubRunner  # held here: the agent keeps only a weak reference
    store: LocalArtifactStore


@pytest.fixture
def lab(config: ChimeraConfig) -> Lab:
    agent = MedicalResearchAgent(config)
    runner = StubRunner()
    agent.set_runner(runner)  # type: ignore[arg-type]
    return Lab(agent, runner, LocalArtifactStore(config.artifacts.local_root))


def _routes(url: str) -> dict[str, Route]:
    """What RunInputs publishes: one route per alias; the trained alias (senior) only as the
    trained resource, as VERL publishes it."""
    routes = {alias: Route(url, f"proxy-{alias}") for alias in ("junior", "board", "pi", "judge")}
    routes[TRAINED_RESOURCE] = Route(url, "proxy-trained")
    return routes


def _spec(**fields: Any) -> dict[str, Any]:
    spec = {
        "run_id": "r1",
        "stage": "gather",
        "task": TASK.model_dump(mode="json"),
        "record_key": record_key(PREFIX, TASK.id),
        "spans_key": spans_key(PREFIX, TASK.id),
        "explore": False,
        "model_set": {"junior": "v2", "senior": "base"},
    }
    spec.update(fields)
    return RolloutInput.model_validate(spec).model_dump(mode="json")


def _rollout(
    lab: Lab, resources: dict[str, Route], **fields: Any
) -> tuple[float | None, RolloutRecord]:
    ids = SimpleNamespace(rollout_id="ro-1", attempt=SimpleNamespace(attempt_id="at-1"))
    reward = lab.agent.rollout(_spec(**fields), resources, ids)
    record = load_record(lab.store, record_key(PREFIX, TASK.id))
    assert record is not None, "the rollout wrote no record"
    return reward, record


def _weighted(components: dict[str, float], weights: dict[str, float]) -> float:
    return sum(components[n] * w for n, w in weights.items()) / sum(weights.values())


def test_a_successful_rollout_records_the_lab_and_its_composed_reward(
    lab: Lab, fake: FakeOpenAI, config: ChimeraConfig
) -> None:
    reward, record = _rollout(lab, _routes(fake.url))
    assert record.status == "succeeded" and record.error is None and record.attempts == 1
    assert (record.rollout_id, record.run_id, record.stage) == ("ro-1", "r1", "gather")
    assert (record.task_id, record.split, record.expected_decision) == ("999", "train", "yes")
    assert record.model_set == {"junior": "v2", "senior": "base"}
    assert (record.final_decision, record.final_answer) == ("GO", "yes")
    assert record.turns > 0 and record.latency_s >= 0.0
    # Reward: the configured plugins' weighted mean, each plugin's part and criteria kept.
    weights = config.rewards.weights
    assert reward == record.reward
    assert set(record.reward_components) == set(weights)
    assert record.reward == pytest.approx(_weighted(record.reward_components, weights))
    assert record.reward_components["decision_alignment"] == 1.0  # GO answers "yes"
    assert record.reward_components["llm_judge"] == 0.5  # the fake judge gives 0.5 throughout
    assert record.reward_breakdown["decision_alignment.aligned_original"] == 1.0
    assert {k for k in record.reward_breakdown if k.startswith("llm_judge.")} == {
        f"llm_judge.{c}" for c in config.rewards.judge_criteria
    }
    assert record.reward_notes == {}
    # Usage per role, from the server's token counts (100 + 20 per call).
    assert set(record.usage) == set(config.roles)
    assert all(u.calls >= 1 for u in record.usage.values())
    calls = sum(u.calls for u in record.usage.values())
    assert record.total_tokens == 120 * calls
    assert record.schema_valid == dict.fromkeys(config.roles, True)
    # The supervisor's decision, as the bandit's training data needs it.
    assert record.supervisor.model_dump() == {
        "hypotheses": HYPOTHESES,
        "chosen": 1,  # the scripted supervisor's choice
        "propensity": 1.0,
        "policy": "llm",
    }
    # The final state as JSON: messages as role/name/content, no scratchpads.
    assert "scratchpads" not in record.state
    assert record.state["final_decision"] == "GO"
    messages = record.state["messages"]
    assert messages and all(set(m) == {"role", "name", "content"} for m in messages)


def test_each_alias_is_called_through_its_route_for_this_rollout(
    lab: Lab, fake: FakeOpenAI, config: ChimeraConfig
) -> None:
    routes = _routes(fake.url)
    _rollout(lab, routes)
    # The trainable roles whose alias has no route of its own (senior) get the trained model;
    # the PI (trainable too, alias pi) keeps its route.
    trainable = {
        name for name, role in config.roles.items() if role.trainable and role.model not in routes
    }
    assert trainable == {"HypothesisRefiner", "ProtocolDesigner"}
    named = [(b["messages"][-1].get("name"), b["model"]) for b in fake.requests]
    lab_calls = [(role, model) for role, model in named if role]
    assert {role for role, _ in lab_calls} == set(config.roles)
    for role, model in lab_calls:
        expected = TRAINED_RESOURCE if role in trainable else config.roles[role].model
        assert model == routes[expected].model, role
    # The judge's call (no role name) goes to the judge's route.
    assert [model for role, model in named if not role] == ["proxy-judge"]
    # Each route's URL was asked for this rollout's ids.
    assert all(r.asked == [("ro-1", "at-1")] for r in routes.values())
    # The tracer's handler saw every lab model call (the judge is a plain OpenAI client).
    assert lab.runner.handler.chat_starts == len(lab_calls)


def test_an_alias_with_its_own_route_is_not_sent_to_the_trained_model(
    lab: Lab, fake: FakeOpenAI
) -> None:
    routes = {**_routes(fake.url), "senior": Route(fake.url, "proxy-senior")}
    _rollout(lab, routes)
    models = {b["messages"][-1].get("name"): b["model"] for b in fake.requests}
    assert models["ProtocolDesigner"] == models["HypothesisRefiner"] == "proxy-senior"
    assert routes[TRAINED_RESOURCE].asked == []


def test_an_alias_without_a_route_uses_its_fallback_endpoint(
    config: ChimeraConfig, fake: FakeOpenAI
) -> None:
    agent = MedicalResearchAgent(
        config, fallback={"judge": Endpoint(fake.url, "direct-judge", "k")}
    )
    runner = StubRunner()
    agent.set_runner(runner)  # type: ignore[arg-type]
    routes = {k: v for k, v in _routes(fake.url).items() if k != "judge"}
    _, record = _rollout(
        Lab(agent, runner, LocalArtifactStore(config.artifacts.local_root)), routes
    )
    assert record.status == "succeeded"
    assert [b["model"] for b in fake.requests if not b["messages"][-1].get("name")] == [
        "direct-judge"
    ]


def test_a_reward_plugin_that_raises_does_not_kill_the_rollout(
    lab: Lab, fake: FakeOpenAI, config: ChimeraConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Boom:
        name = "boom"

        def score(self, inp: RewardInput) -> None:
            raise RuntimeError("reward plugin bug")

    registry = build_registry(environ={"CHIMERA_PLUGINS": ""})
    registry.add("reward", Boom(), PluginInfo("boom", "tests", builtin=False))
    monkeypatch.setattr(agent_module, "get_registry", lambda: registry)
    config.rewards.weights = {"decision_alignment": 3.0, "boom": 1.0}

    reward, record = _rollout(lab, _routes(fake.url))
    assert record.status == "succeeded" and record.error is None
    # The crashed reward is flagged, named with its plugin, and left out of the mean.
    assert record.reward_components == {"decision_alignment": 1.0}
    assert reward == record.reward == pytest.approx(1.0)
    assert record.reward_failed == ["boom"]
    assert record.reward_notes == {
        "boom": "RuntimeError: reward plugin bug [plugin 'boom' (package tests)]"
    }

    config.rewards.weights = {"boom": 1.0}  # nothing scored: the rollout fails, naming why
    reward, record = _rollout(lab, _routes(fake.url))
    assert reward is None and record.status == "failed" and record.error is not None
    assert "no reward with a positive weight scored" in record.error
    assert "boom: RuntimeError: reward plugin bug [plugin 'boom'" in record.error


def test_an_unknown_reward_fails_the_record_but_keeps_the_lab_outcome(
    lab: Lab, fake: FakeOpenAI, config: ChimeraConfig
) -> None:
    config.rewards.weights = {"decision_alignment": 1.0, "no_such_reward": 1.0}
    reward, record = _rollout(lab, _routes(fake.url))
    assert reward is None and record.reward is None
    assert record.status == "failed"
    assert record.error is not None
    assert record.error.startswith("reward: PluginError: unknown reward 'no_such_reward'")
    assert record.final_decision == "GO" and record.turns > 0  # what the lab did is kept


def test_a_judge_outage_is_noted_and_the_rollout_still_succeeds(
    lab: Lab, fake: FakeOpenAI, config: ChimeraConfig
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    routes = {**_routes(fake.url), "judge": Route(dead, "proxy-judge")}
    reward, record = _rollout(lab, routes)
    assert record.status == "succeeded" and reward == record.reward
    assert record.reward_components["llm_judge"] == config.rewards.judge_failure_score
    assert record.reward_notes["llm_judge"].startswith("judge call failed: APIConnectionError")


def test_a_model_fault_writes_a_failed_record_with_the_reason(
    lab: Lab, config: ChimeraConfig
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # the model server is down
    reward, record = _rollout(lab, _routes(dead))
    assert reward is None
    assert record.status == "failed"
    assert record.attempts == config.stages.gather.max_attempts == 2
    assert record.error is not None and "Connection" in record.error, record.error
    assert record.reward is None and record.reward_components == {}
    assert (record.final_decision, record.turns, record.usage) == (None, 0, {})
    assert record.supervisor.hypotheses == [] and record.supervisor.chosen is None
    assert (record.task_id, record.expected_decision, record.rollout_id) == ("999", "yes", "ro-1")


def test_a_failed_record_is_overwritten_when_the_task_succeeds_later(
    lab: Lab, fake: FakeOpenAI
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    _, first = _rollout(lab, _routes(dead))
    _, second = _rollout(lab, _routes(fake.url))
    assert (first.status, second.status) == ("failed", "succeeded")
    assert list(lab.store.list(PREFIX)) == [record_key(PREFIX, TASK.id)]  # one record, no spans


@pytest.fixture
def bandit_dir(tmp_path: Path) -> Path:
    """A saved, untrained bandit policy: it scores every arm 0 and so picks the first."""
    return LinearBanditPolicy(n_features=2**8).save(tmp_path / "bandit")


def test_a_bandit_policy_chooses_without_the_supervisor_llm_and_is_recorded(
    lab: Lab, fake: FakeOpenAI, bandit_dir: Path
) -> None:
    _, record = _rollout(
        lab, _routes(fake.url), bandit_dir=str(bandit_dir), bandit_version="v3", explore=False
    )
    assert record.status == "succeeded"
    assert record.supervisor.model_dump() == {
        "hypotheses": HYPOTHESES,
        "chosen": 0,
        "propensity": 1.0,
        "policy": "bandit:v3",
    }
    roles = {b["messages"][-1].get("name") for b in fake.requests}
    assert "Supervisor" not in roles and "Supervisor" not in record.usage


def test_an_exploring_rollout_logs_the_true_propensity(
    lab: Lab, fake: FakeOpenAI, bandit_dir: Path, config: ChimeraConfig
) -> None:
    _, record = _rollout(
        lab, _routes(fake.url), bandit_dir=str(bandit_dir), bandit_version="v3", explore=True
    )
    eps, k = config.stages.gather.explore_epsilon, len(HYPOTHESES)
    assert record.supervisor.policy == f"bandit:v3+eps{eps:g}"
    chosen = record.supervisor.chosen
    assert chosen in range(k)
    greedy = 1 - eps + eps / k
    expected = greedy if chosen == 0 else eps / k
    assert record.supervisor.propensity == pytest.approx(expected)


def test_the_supervisor_policy_follows_the_spec(
    lab: Lab, config: ChimeraConfig, bandit_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def spec(**fields: Any) -> RolloutInput:
        return RolloutInput.model_validate(_spec(**fields))

    assert isinstance(lab.agent.supervisor_policy(spec()), LLMPolicy)
    exploring = lab.agent.supervisor_policy(spec(explore=True))
    assert isinstance(exploring, EpsilonExplore) and isinstance(exploring.base, LLMPolicy)
    assert exploring.epsilon == config.stages.gather.explore_epsilon

    loads: list[Path] = []
    real_load = LinearBanditPolicy.load

    def counting_load(directory: Path) -> LinearBanditPolicy:
        loads.append(directory)
        return real_load(directory)

    monkeypatch.setattr(LinearBanditPolicy, "load", staticmethod(counting_load))
    first = lab.agent.supervisor_policy(spec(bandit_dir=str(bandit_dir), bandit_version="v3"))
    again = lab.agent.supervisor_policy(
        spec(bandit_dir=str(bandit_dir), bandit_version="v3", explore=True)
    )
    assert isinstance(first, BanditSupervisorPolicy) and first.name == "bandit:v3"
    assert isinstance(again, EpsilonExplore) and isinstance(again.base, BanditSupervisorPolicy)
    assert again.base.policy is first.policy  # loaded once per runner process
    assert loads == [bandit_dir]
    unversioned = lab.agent.supervisor_policy(spec(bandit_dir=str(bandit_dir)))
    assert unversioned.name == "bandit:bandit"
