"""The hooks a Chimera plugin can implement (pluggy project ``chimera``).

Registration hooks receive a ``register`` callable, in the style of simonw/llm: call it once
per object. Lifecycle hooks are told about events; their return values are ignored, and an
exception in one is logged, never allowed to fail the stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from chimera_core.plugins.types import Algorithm, Reward, Tool, TraceAdapter

PROJECT = "chimera"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_tools(register: Callable[[Tool], None]) -> None:
    """Register tools: objects with ``name``, ``description`` and ``run(query, context)``."""


@hookspec
def register_rewards(register: Callable[[Reward], None]) -> None:
    """Register rewards: objects with ``name`` and ``score(inp) -> RewardScore``."""


@hookspec
def register_adapters(register: Callable[[TraceAdapter], None]) -> None:
    """Register trace adapters: objects with ``name`` and ``adapt(rollouts, config)``."""


@hookspec
def register_algorithms(register: Callable[[Algorithm], None]) -> None:
    """Register algorithms: objects with ``name``, ``options_model`` and ``train(request)``."""


@hookspec
def on_rollout_finished(
    run_id: str, task_id: str, reward: float, record: Mapping[str, Any]
) -> None:
    """A rollout finished and was rewarded (``record`` is its stored summary, JSON form)."""


@hookspec
def on_stage_finished(run_id: str, stage: str, outputs: Mapping[str, str]) -> None:
    """A pipeline stage finished; ``outputs`` maps output names to artifact URIs."""
