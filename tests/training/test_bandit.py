"""The supervisor's contextual bandit learns which arm pays, saves without pickle, estimates OPE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chimera_core.data.training_data import BanditSample
from chimera_core.training.bandit import LinearBanditPolicy

GOALS = [
    ("Does aspirin reduce stroke recurrence?", "aspirin stroke recurrence"),
    ("Is vitamin D linked to fracture risk?", "vitamin fracture risk"),
    ("Does exercise improve depression scores?", "exercise depression scores"),
    ("Are statins associated with muscle pain?", "statins muscle pain"),
]


def _logged(rng: np.random.Generator, n: int) -> list[BanditSample]:
    """Uniform logging policy; the arm that addresses the question's terms pays 1, others 0."""
    samples = []
    for i in range(n):
        goal, terms = GOALS[i % len(GOALS)]
        arms = [
            f"Unrelated idea about gut microbiome number {i}",
            f"Hypothesis: {terms} are causally related in adults",
            "Generic claim that more research is needed",
        ]
        chosen = int(rng.integers(3))
        samples.append(
            BanditSample(
                task_id=str(i),
                goal=goal,
                hypotheses=arms,
                chosen=chosen,
                propensity=1 / 3,
                reward=1.0 if chosen == 1 else 0.0,
            )
        )
    return samples


def test_policy_learns_the_paying_arm_and_ope_sees_it() -> None:
    rng = np.random.default_rng(0)
    samples = _logged(rng, 90)
    policy = LinearBanditPolicy(n_features=2**10, epsilon=0.1)
    assert policy.probabilities("q", ["a", "b"], explore=True).tolist() == pytest.approx(
        [0.95, 0.05]
    )
    policy.update(samples)
    test = _logged(np.random.default_rng(1), 30)
    picks = [int(np.argmax(policy.scores(s.goal, s.hypotheses))) for s in test]
    assert picks.count(1) == len(test)
    ope = policy.evaluate_off_policy(test)
    assert ope.logged_value < 0.5
    assert ope.snips == pytest.approx(1.0)
    assert ope.ips > 2 * ope.logged_value  # IPS is unbiased but noisy on 30 samples


def test_exploration_propensities_are_logged() -> None:
    policy = LinearBanditPolicy(epsilon=0.3)
    policy.update(_logged(np.random.default_rng(0), 30))
    rng = np.random.default_rng(5)
    goal, terms = GOALS[0]
    arms = ["unrelated", f"{terms} hypothesis", "generic"]
    seen = {policy.choose(goal, arms, explore=True, rng=rng) for _ in range(200)}
    assert sorted({round(p, 6) for _, p in seen}) == [0.1, 0.8]
    assert {i for i, _ in seen} == {0, 1, 2}
    assert policy.choose(goal, arms, explore=False, rng=rng) == (1, 1.0)


def test_save_and_load_round_trip_without_pickle(tmp_path: Path) -> None:
    policy = LinearBanditPolicy(n_features=2**8)
    samples = _logged(np.random.default_rng(0), 20)
    policy.update(samples)
    policy.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bandit.json", "bandit.safetensors"]
    loaded = LinearBanditPolicy.load(tmp_path)
    goal, terms = GOALS[1]
    arms = ["x", terms, "y"]
    np.testing.assert_allclose(loaded.scores(goal, arms), policy.scores(goal, arms))
    loaded.update(samples[:5])  # keeps learning online after a reload
    assert loaded.n_updates == 25
