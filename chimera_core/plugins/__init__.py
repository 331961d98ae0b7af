"""The plugin system: pluggy hooks, the registry, and the protocols plugins implement."""

from chimera_core.plugins.hookspecs import hookimpl
from chimera_core.plugins.manager import PluginRegistry, build_registry, get_registry
from chimera_core.plugins.types import (
    Algorithm,
    Reward,
    RewardInput,
    RewardScore,
    Tool,
    ToolContext,
    TraceAdapter,
)

__all__ = [
    "Algorithm",
    "PluginRegistry",
    "Reward",
    "RewardInput",
    "RewardScore",
    "Tool",
    "ToolContext",
    "TraceAdapter",
    "build_registry",
    "get_registry",
    "hookimpl",
]
