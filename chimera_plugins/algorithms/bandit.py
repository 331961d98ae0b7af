"""Algorithm ``bandit``: the supervisor's contextual bandit, trained on logged choices."""

from __future__ import annotations

from typing import Any

from chimera_core.plugins import LinearBanditPolicy, TrainRequest, TrainResult
from chimera_plugins.algorithms.digest import data_sha256
from chimera_plugins.algorithms.options import BanditOptions


class BanditAlgorithm:
    """Continues the champion policy (or starts one) with this run's samples; reports IPS."""

    name = "bandit"
    options_model = BanditOptions

    def train(self, request: TrainRequest) -> TrainResult:
        """Update, estimate off-policy value against the logging policy, save."""
        cfg: BanditOptions = request.options
        samples = request.data.bandit
        metrics: dict[str, Any] = {"samples": len(samples)}
        if not samples:
            reason = "no supervisor decisions with propensities were logged"
            return TrainResult(skipped=reason, metrics=metrics)
        if request.parent is None:
            policy = LinearBanditPolicy(cfg.n_features, cfg.epsilon, cfg.l2)
        else:
            policy = LinearBanditPolicy.load(request.parent)
        policy.update(samples)
        estimate = policy.evaluate_off_policy(samples)
        metrics["off_policy"] = estimate.model_dump()
        request.log.info(
            "bandit: %d samples; logged value %.3f, IPS %.3f, SNIPS %.3f",
            len(samples),
            estimate.logged_value,
            estimate.ips,
            estimate.snips,
        )
        policy.save(request.output_dir)
        return TrainResult(
            output_dir=request.output_dir,
            metrics=metrics,
            data_sha256=data_sha256(list(samples)),
            config={"algorithm": self.name, **cfg.model_dump(mode="json")},
        )
