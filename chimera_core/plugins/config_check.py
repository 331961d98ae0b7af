"""Check a config against the loaded plugins: every named plugin exists, options are valid."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from chimera_core.config import ChimeraConfig, load_config
from chimera_core.errors import ConfigError, PluginError
from chimera_core.plugins.manager import PluginRegistry, get_registry

TRAINING_STAGES = ("sft", "ppo", "bandit")


def algorithm_options(config: ChimeraConfig, stage: str, registry: PluginRegistry) -> Any:
    """The validated options of the algorithm a training stage names."""
    section = getattr(config.stages, stage)
    algorithm = registry.algorithm(section.algorithm)
    try:
        return algorithm.options_model.model_validate(section.options)
    except ValidationError as exc:
        raise ConfigError(_option_problems(stage, section.algorithm, exc)) from None


def _option_problems(stage: str, algorithm: str, exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"])
        problems.append(
            f"stages.{stage}.options.{path}: {error['msg']} (options of algorithm {algorithm!r})"
        )
    return problems


def check_config(config: ChimeraConfig, registry: PluginRegistry | None = None) -> None:
    """Raise ConfigError listing every unknown plugin name and invalid algorithm option."""
    registry = registry or get_registry()
    problems: list[str] = []

    def known(kind: str, name: str, where: str) -> bool:
        try:
            registry.get(kind, name)  # type: ignore[arg-type]
        except PluginError as exc:
            problems.append(f"{where}: {exc}")
            return False
        return True

    for role_name, role in config.roles.items():
        for tool in role.tools:
            known("tool", tool, f"roles.{role_name}.tools")
    for reward in config.rewards.weights:
        known("reward", reward, "rewards.weights")
    known("adapter", config.stages.trace_adapter, "stages.trace_adapter")
    for stage in TRAINING_STAGES:
        name = getattr(config.stages, stage).algorithm
        if not known("algorithm", name, f"stages.{stage}.algorithm"):
            continue
        try:
            options = algorithm_options(config, stage, registry)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        rank = getattr(options, "lora_r", None)
        if isinstance(rank, int) and rank > config.serving.max_lora_rank:
            problems.append(
                f"stages.{stage}.options.lora_r: {rank} is above serving.max_lora_rank "
                f"({config.serving.max_lora_rank}); the server could not load the adapter"
            )
    if problems:
        raise ConfigError(problems, source=f"profile {config.profile!r} against the plugins")


def load_checked_config(
    profile: str | None = None, *, overrides: dict[str, Any] | None = None
) -> ChimeraConfig:
    """Load a profile (see ``load_config``) and check it against the loaded plugins."""
    config = load_config(profile, overrides=overrides)
    check_config(config)
    return config
