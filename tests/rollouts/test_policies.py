"""The supervisor's learned policy: a bandit as the lab's ``SupervisorPolicy``, greedy or exploring.

While gathering, the agent wraps it in ``EpsilonExplore`` (rollouts/agent.py); the probability
of each choice is logged as the propensity the next bandit update and its IPS estimate divide by.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chimera_core.data.training_data import BanditSample
from chimera_core.lab.supervisor_policy import Choice, EpsilonExplore, SupervisorPolicy
from chimera_core.rollouts.policies import BanditSupervisorPolicy
from chimera_core.training.bandit import LinearBanditPolicy

GOAL = "Does aspirin reduce stroke recurrence in adults?"
PAYING = "Aspirin reduces stroke recurrence in adults"
OTHERS = ["Gut microbiome shifts explain everything", "More research is needed"]


def _never_asked() -> Choice:
    raise AssertionError("a bandit policy must not consult the supervisor LLM")


def _samples(n: int = 60) -> list[BanditSample]:
    """Uniformly logged choices; the arm that addresses the goal pays 1, the others 0."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        arms = [*OTHERS, PAYING]
        rng.shuffle(arms)
        chosen = int(rng.integers(len(arms)))
        out.append(
            BanditSample(
                task_id=str(i),
                goal=GOAL,
                hypotheses=arms,
                chosen=chosen,
                propensity=1 / 3,
                reward=float(arms[chosen] == PAYING),
            )
        )
    return out


@pytest.fixture(scope="module")
def trained() -> LinearBanditPolicy:
    policy = LinearBanditPolicy(n_features=2**10)
    policy.update(_samples())
    return policy


def _state(goal: str = GOAL) -> dict[str, Any]:
    return {"research_goal": goal, "initial_hypotheses": []}


def test_is_a_supervisor_policy_named_after_its_version(trained: LinearBanditPolicy) -> None:
    policy = BanditSupervisorPolicy(trained, "v7")
    assert isinstance(policy, SupervisorPolicy)
    assert policy.name == "bandit:v7"


def test_an_untrained_bandit_takes_the_first_arm_with_probability_one() -> None:
    policy = BanditSupervisorPolicy(LinearBanditPolicy(n_features=2**8), "v0")
    choice = policy.choose(["a", "b", "c"], _state(), _never_asked)
    assert (choice.selected_index, choice.probability) == (0, 1.0)
    assert choice.justification == "bandit:v0: predicted reward 0.000, best of 3"


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_trained_bandit_picks_the_paying_arm_wherever_it_stands(
    trained: LinearBanditPolicy, position: int
) -> None:
    arms = list(OTHERS)
    arms.insert(position, PAYING)
    choice = BanditSupervisorPolicy(trained, "v7").choose(arms, _state(), _never_asked)
    assert choice.selected_index == position and choice.probability == 1.0
    predicted = trained.scores(GOAL, arms)[position]
    assert choice.justification == f"bandit:v7: predicted reward {predicted:.3f}, best of 3"


def test_the_goal_it_scores_is_the_states_research_goal(
    trained: LinearBanditPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, list[str]]] = []

    def scores(goal: str, hypotheses: list[str]) -> np.ndarray:
        seen.append((goal, list(hypotheses)))
        return np.asarray([0.1, 0.9])

    monkeypatch.setattr(trained, "scores", scores)
    policy = BanditSupervisorPolicy(trained, "v7")
    assert policy.choose(["a", "b"], _state("the goal"), _never_asked).selected_index == 1
    assert policy.choose(["a", "b"], {}, _never_asked).selected_index == 1  # no goal: ""
    assert seen == [("the goal", ["a", "b"]), ("", ["a", "b"])]


def test_a_saved_and_reloaded_policy_chooses_the_same(
    trained: LinearBanditPolicy, tmp_path: Path
) -> None:
    loaded = LinearBanditPolicy.load(trained.save(tmp_path / "bandit"))
    for position in range(3):
        arms = list(OTHERS)
        arms.insert(position, PAYING)
        a = BanditSupervisorPolicy(trained, "v7").choose(arms, _state(), _never_asked)
        b = BanditSupervisorPolicy(loaded, "v7").choose(arms, _state(), _never_asked)
        assert a == b


def _explore(trained: LinearBanditPolicy, epsilon: float, seed: int) -> EpsilonExplore:
    return EpsilonExplore(BanditSupervisorPolicy(trained, "v7"), epsilon, random.Random(seed))


def test_exploring_keeps_every_choice_in_range_with_its_true_probability(
    trained: LinearBanditPolicy,
) -> None:
    eps, arms = 0.3, [*OTHERS, PAYING]
    k = len(arms)
    policy = _explore(trained, eps, seed=1)
    assert policy.name == "bandit:v7+eps0.3"
    draws = [policy.choose(arms, _state(), _never_asked) for _ in range(2000)]
    assert {c.selected_index for c in draws} == {0, 1, 2}
    propensity = {c.selected_index: c.probability for c in draws}
    assert all(c.probability == propensity[c.selected_index] for c in draws)  # one per arm
    assert propensity[2] == pytest.approx(1 - eps + eps / k)  # the greedy arm
    assert propensity[0] == propensity[1] == pytest.approx(eps / k)
    assert all(0.0 < p <= 1.0 for p in propensity.values())
    assert sum(propensity.values()) == pytest.approx(1.0)  # a distribution over the arms
    freq = Counter(c.selected_index for c in draws)
    for index, p in propensity.items():  # and the one the choices are drawn from
        assert freq[index] / len(draws) == pytest.approx(p, abs=0.03)
    exploring = [c for c in draws if c.justification.startswith("exploration:")]
    assert 0.25 < len(exploring) / len(draws) < 0.35


def test_exploration_is_deterministic_for_a_seed(trained: LinearBanditPolicy) -> None:
    arms = [*OTHERS, PAYING]

    def run(seed: int) -> list[Choice]:
        policy = _explore(trained, 0.5, seed)
        return [policy.choose(arms, _state(), _never_asked) for _ in range(50)]

    assert run(3) == run(3)
    assert [c.selected_index for c in run(3)] != [c.selected_index for c in run(4)]


def test_epsilon_zero_is_greedy_and_epsilon_one_is_uniform(trained: LinearBanditPolicy) -> None:
    arms = [PAYING, *OTHERS]
    greedy = _explore(trained, 0.0, seed=0)
    assert {greedy.choose(arms, _state(), _never_asked)[::2] for _ in range(50)} == {(0, 1.0)}
    uniform = _explore(trained, 1.0, seed=0)
    draws = [uniform.choose(arms, _state(), _never_asked) for _ in range(300)]
    assert {c.selected_index for c in draws} == {0, 1, 2}
    assert all(c.probability == pytest.approx(1 / 3) for c in draws)
    with pytest.raises(ValueError, match="epsilon must be in"):
        EpsilonExplore(BanditSupervisorPolicy(trained, "v7"), 1.5)


def test_logged_choices_are_valid_training_samples_for_the_next_bandit(
    trained: LinearBanditPolicy,
) -> None:
    arms = [*OTHERS, PAYING]
    policy = _explore(trained, 0.2, seed=7)
    samples = []
    for i in range(40):
        choice = policy.choose(arms, _state(), _never_asked)
        samples.append(
            BanditSample(
                task_id=str(i),
                goal=GOAL,
                hypotheses=arms,
                chosen=choice.selected_index,
                propensity=choice.probability,  # validated: in (0, 1]
                reward=float(arms[choice.selected_index] == PAYING),
            )
        )
    estimate = trained.evaluate_off_policy(samples)
    # The greedy target picks the paying arm: its self-normalised value is 1.
    assert estimate.snips == pytest.approx(1.0)
    assert estimate.logged_value < 1.0
