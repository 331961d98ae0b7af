"""The hooks a Chimera plugin can implement (pluggy project ``chimera``).

Registration hooks receive a ``register`` callable, in the style of simonw/llm: call it once
per object. Lifecycle hooks are told about events; their return values are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

PROJECT = "chimera"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_tools(register: Callable[[Any], None]) -> None:
    """Register tools: objects with ``name``, ``description`` and ``run(query, context)``."""


@hookspec
def register_rewards(register: Callable[[Any], None]) -> None:
    """Register rewards: objects with ``name`` and ``score(inp) -> RewardScore``."""


@hookspec
def register_adapters(register: Callable[[Any], None]) -> None:
    """Register trace adapters: objects with ``name`` and ``adapt(rollouts)``."""


@hookspec
def register_algorithms(register: Callable[[Any], None]) -> None:
    """Register training algorithms: objects with ``name`` and ``train(context)``."""


@hookspec
def on_rollout_finished(
    run_id: str, task_id: str, reward: float, record: Mapping[str, Any]
) -> None:
    """A rollout finished and was rewarded (``record`` is its stored summary)."""


@hookspec
def on_stage_finished(run_id: str, stage: str, outputs: Mapping[str, str]) -> None:
    """A pipeline stage finished; ``outputs`` maps output names to artifact URIs."""
