"""Serving a model set: which checkpoint each alias runs, and where its endpoint is.

Embedded aliases are served by one ``chimera serve`` process started for the set (aliases on
the same checkpoint share weights there); ``openai`` aliases (vLLM) keep their configured URL
and can only run the version that endpoint serves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ChimeraError
from chimera_core.registry import BASE, ModelRegistry

POLICY_ALIAS = "supervisor_policy"  # the bandit's registry alias (not a served model)


def bandit_policy_dir(registry: ModelRegistry, version: str) -> tuple[str | None, str | None]:
    """Local directory and version of the supervisor's bandit policy (None: use the LLM)."""
    if version == "champion":
        version = registry.champion(POLICY_ALIAS)
    if version == BASE:
        return None, None
    return str(registry.fetch(POLICY_ALIAS, version)), version


def checkpoints_for(
    config: ChimeraConfig, model_set: Mapping[str, str], registry: ModelRegistry
) -> dict[str, Path]:
    """Served model name -> local HF directory for every embedded alias of the set."""
    from chimera_core.serving.model_store import resolve_checkpoint

    out: dict[str, Path] = {}
    for alias, endpoint in config.models.items():
        version = model_set.get(alias, BASE)
        if endpoint.backend != "embedded":
            if version != BASE:
                raise ChimeraError(
                    f"model alias {alias!r} is served at {endpoint.base_url}; Chimera cannot load "
                    f"version {version!r} there. Serve it (vLLM) and point the profile at it."
                )
            continue
        out[endpoint.served_model] = (
            resolve_checkpoint(endpoint.checkpoint, config)
            if version == BASE
            else registry.fetch(alias, version)
        )
    return out


@contextmanager
def serve_model_set(
    config: ChimeraConfig, model_set: Mapping[str, str], registry: ModelRegistry
) -> Iterator[dict[str, str]]:
    """Start what the set needs; yield alias -> OpenAI-compatible base URL; stop on exit."""
    from chimera_core.serving.lifecycle import base_urls, start_server

    checkpoints = checkpoints_for(config, model_set, registry)
    if not checkpoints:
        yield base_urls(config)
        return
    with start_server(config, models=checkpoints) as server:
        yield base_urls(config, server)
