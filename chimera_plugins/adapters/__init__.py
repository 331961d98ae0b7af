"""Built-in trace adapters."""

from __future__ import annotations

from collections.abc import Callable

from chimera_core.plugins import TraceAdapter, hookimpl
from chimera_plugins.adapters.hierarchical import HierarchicalTraceAdapter


@hookimpl
def register_adapters(register: Callable[[TraceAdapter], None]) -> None:
    """Register the built-in adapters."""
    register(HierarchicalTraceAdapter())
