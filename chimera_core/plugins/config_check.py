"""Check a config against the loaded plugins: every named plugin exists, options are valid."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from chimera_core.config import ChimeraConfig, load_config
from chimera_core.errors import ConfigError, PluginError
from chimera_core.plugins.manager import PluginRegistry, get_registry

TRAINING_STAGES = ("sft", "ppo", "bandit", "board")


def algorithm_options(config: ChimeraConfig, stage: str, registry: PluginRegistry) -> Any:
    """The validated options of the algorithm a training stage names."""
    section = getattr(config.stages, stage)
    return _validated(stage, section.algorithm, section.chosen_options(), registry)


def _validated(stage: str, name: str, options: dict[str, Any], registry: PluginRegistry) -> Any:
    try:
        return registry.algorithm(name).options_model.model_validate(options)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = ".".join(str(p) for p in error["loc"])
            problems.append(
                f"stages.{stage}.options.{name}.{path}: {error['msg']} "
                f"(options of algorithm {name!r})"
            )
        raise ConfigError(problems) from None


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
        section = getattr(config.stages, stage)
        known("algorithm", section.algorithm, f"stages.{stage}.algorithm")
        # Every algorithm given options is checked, not only the chosen one: a typo in the
        # options of the algorithm switched to later is found now.
        for name in {section.algorithm, *section.options}:
            if name != section.algorithm and not known(
                "algorithm", name, f"stages.{stage}.options.{name}"
            ):
                continue
            if name not in registry.names("algorithm"):
                continue
            try:
                options = _validated(stage, name, section.options.get(name) or {}, registry)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            rank = getattr(options, "lora_r", None)
            if isinstance(rank, int) and rank > config.serving.max_lora_rank:
                problems.append(
                    f"stages.{stage}.options.{name}.lora_r: {rank} is above "
                    f"serving.max_lora_rank ({config.serving.max_lora_rank}); the server could "
                    "not load the adapter"
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
