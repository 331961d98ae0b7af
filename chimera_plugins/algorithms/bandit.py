"""Algorithm ``bandit``: the supervisor's contextual bandit, trained on logged choices."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from chimera_core.registry import BASE
from chimera_core.rollouts.serving import POLICY_ALIAS
from chimera_core.stages.base import StageContext, StageResult
from chimera_core.stages.training_inputs import data_sha256, gathered_training_data


class BanditAlgorithm:
    """Continues the champion policy (or starts one) with this run's samples; reports IPS."""

    name = "bandit"

    def train(self, ctx: StageContext) -> StageResult:
        """Update, estimate off-policy value against the logging policy, register."""
        from chimera_core.training.bandit import LinearBanditPolicy

        cfg = ctx.config.stages.bandit
        samples = gathered_training_data(ctx).bandit
        metrics: dict[str, Any] = {"samples": len(samples)}
        if not samples:
            metrics["skipped"] = "no supervisor decisions with propensities were logged"
            return StageResult(stage=ctx.stage, run_id=ctx.run_id, metrics=metrics)
        registry = ctx.models
        parent = registry.champion(POLICY_ALIAS)
        if parent == BASE:
            policy = LinearBanditPolicy(cfg.n_features, cfg.epsilon, cfg.l2)
        else:
            policy = LinearBanditPolicy.load(registry.fetch(POLICY_ALIAS, parent))
        policy.update(samples)
        estimate = policy.evaluate_off_policy(samples)
        metrics["off_policy"] = estimate.model_dump()
        ctx.log.info(
            "bandit: %d samples; logged value %.3f, IPS %.3f, SNIPS %.3f",
            len(samples),
            estimate.logged_value,
            estimate.ips,
            estimate.snips,
        )
        with tempfile.TemporaryDirectory() as tmp:
            policy.save(Path(tmp))
            version = registry.register(
                POLICY_ALIAS,
                Path(tmp),
                parent=parent,
                stage=ctx.stage,
                run_id=ctx.run_id,
                data_sha256=data_sha256(list(samples)),
                config=cfg.model_dump(mode="json"),
                metrics=metrics,
            )
        return StageResult(
            stage=ctx.stage,
            run_id=ctx.run_id,
            outputs={"policy": version.uri, "alias": POLICY_ALIAS, "version": version.version},
            metrics=metrics,
        )
