"""Contextual bandit for the supervisor: which junior hypothesis to pursue.

Formulation: each candidate hypothesis is an arm; a linear reward model r ≈ w·φ(goal, arm)
is fitted by SGD on logged (context, chosen arm, final reward) samples (the direct method).
The policy is ε-greedy over the model's scores while gathering (so every arm keeps a known,
non-zero propensity) and greedy at evaluation. The value of a new policy is estimated off-policy
from the logged samples with inverse propensity scoring (IPS and self-normalised SNIPS).
Weights are saved as safetensors plus JSON: no pickle.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDRegressor

from chimera_core.data.training_data import BanditSample

_WORD = re.compile(r"[a-z][a-z0-9-]{2,}")
WEIGHTS_FILE = "bandit.safetensors"
META_FILE = "bandit.json"


class OffPolicyEstimate(BaseModel):
    """Value of a target policy estimated from logged data, beside the logged policy's value."""

    n: int
    logged_value: float
    ips: float
    snips: float
    match_rate: float = Field(description="Share of samples where the target picks the logged arm.")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class LinearBanditPolicy:
    """ε-greedy policy over a hashed linear reward model of (goal, hypothesis) pairs."""

    def __init__(self, n_features: int = 2**12, epsilon: float = 0.2, l2: float = 1e-3) -> None:
        self.n_features = n_features
        self.epsilon = epsilon
        self.l2 = l2
        self._vectorizer = HashingVectorizer(
            n_features=n_features, alternate_sign=False, norm="l2", ngram_range=(1, 2)
        )
        self.model = SGDRegressor(alpha=l2, learning_rate="adaptive", eta0=0.05, random_state=0)
        self.n_updates = 0

    def features(self, goal: str, hypotheses: Sequence[str]) -> sparse.csr_matrix:
        """φ(goal, arm) for each arm: hashed arm text, hashed goal-arm overlap, dense stats."""
        goal_words = _words(goal)
        texts = []
        dense = []
        for hyp in hypotheses:
            hyp_words = _words(hyp)
            shared = goal_words & hyp_words
            texts.append(hyp + " " + " ".join(f"ov_{w}" for w in sorted(shared)))
            union = goal_words | hyp_words
            dense.append(
                [len(shared) / len(union) if union else 0.0, math.log1p(len(hyp_words)) / 5]
            )
        hashed = self._vectorizer.transform(texts)
        return sparse.hstack([hashed, sparse.csr_matrix(np.asarray(dense))], format="csr")

    @property
    def fitted(self) -> bool:
        """Whether the reward model has seen any data."""
        return self.n_updates > 0

    def scores(self, goal: str, hypotheses: Sequence[str]) -> np.ndarray:
        """Predicted final reward of each arm (zeros before any update)."""
        if not self.fitted:
            return np.zeros(len(hypotheses))
        return np.asarray(self.model.predict(self.features(goal, hypotheses)))

    def probabilities(self, goal: str, hypotheses: Sequence[str], explore: bool) -> np.ndarray:
        """Action probabilities: ε-greedy when exploring, greedy otherwise (ties: first arm)."""
        k = len(hypotheses)
        best = int(np.argmax(self.scores(goal, hypotheses)))
        eps = self.epsilon if explore else 0.0
        probs = np.full(k, eps / k)
        probs[best] += 1.0 - eps
        return probs

    def choose(
        self, goal: str, hypotheses: Sequence[str], explore: bool, rng: np.random.Generator
    ) -> tuple[int, float]:
        """Pick an arm; return it with the probability it had (logged as the propensity)."""
        probs = self.probabilities(goal, hypotheses, explore)
        index = int(rng.choice(len(probs), p=probs)) if explore else int(np.argmax(probs))
        return index, float(probs[index])

    def update(self, samples: Sequence[BanditSample], epochs: int = 5) -> None:
        """Online SGD on the chosen arms' (features, reward) pairs, a few passes."""
        if not samples:
            return
        rows = sparse.vstack(
            [self.features(s.goal, s.hypotheses)[s.chosen] for s in samples], format="csr"
        )
        rewards = np.asarray([s.reward for s in samples], dtype=float)
        for _ in range(epochs):
            self.model.partial_fit(rows, rewards)
        self.n_updates += len(samples)

    def evaluate_off_policy(self, samples: Sequence[BanditSample]) -> OffPolicyEstimate:
        """IPS/SNIPS estimate of this policy's (greedy) value on samples logged by another."""
        weights = []
        rewards = []
        for s in samples:
            target = self.probabilities(s.goal, s.hypotheses, explore=False)[s.chosen]
            weights.append(target / s.propensity)
            rewards.append(s.reward)
        w = np.asarray(weights)
        r = np.asarray(rewards)
        n = len(samples)
        return OffPolicyEstimate(
            n=n,
            logged_value=float(r.mean()) if n else 0.0,
            ips=float((w * r).mean()) if n else 0.0,
            snips=float((w * r).sum() / w.sum()) if n and w.sum() > 0 else 0.0,
            match_rate=float((w > 0).mean()) if n else 0.0,
        )

    def save(self, directory: Path) -> Path:
        """Write weights (safetensors) and settings (JSON) into a directory."""
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        coef = getattr(self.model, "coef_", np.zeros(self.n_features + 2))
        intercept = getattr(self.model, "intercept_", np.zeros(1))
        save_file(
            {"coef": np.asarray(coef, dtype=np.float64), "intercept": np.asarray(intercept)},
            str(directory / WEIGHTS_FILE),
        )
        meta = {
            "n_features": self.n_features,
            "epsilon": self.epsilon,
            "l2": self.l2,
            "n_updates": self.n_updates,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> LinearBanditPolicy:
        """Read a policy written by ``save``."""
        from safetensors.numpy import load_file

        meta = json.loads((directory / META_FILE).read_text())
        policy = cls(meta["n_features"], meta["epsilon"], meta["l2"])
        policy.n_updates = meta["n_updates"]
        if policy.n_updates:
            tensors = load_file(str(directory / WEIGHTS_FILE))
            # Restore a fitted SGDRegressor from its parameters; no pickle involved.
            policy.model.coef_ = tensors["coef"]
            policy.model.intercept_ = tensors["intercept"]
            policy.model.t_ = float(policy.n_updates)
            policy.model.n_features_in_ = tensors["coef"].shape[0]
        return policy
