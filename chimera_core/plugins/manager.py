"""Loading plugins (built-ins, then entry points) and the registry of what they register."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import pluggy

from chimera_core.errors import PluginError
from chimera_core.logs import get_logger
from chimera_core.plugins import hookspecs
from chimera_core.plugins.types import (
    KINDS,
    REQUIRED_ATTRS,
    Algorithm,
    Kind,
    Reward,
    Tool,
    TraceAdapter,
)

_log = get_logger("plugins")
REGISTER_HOOKS: dict[Kind, str] = {
    "tool": "register_tools",
    "reward": "register_rewards",
    "adapter": "register_adapters",
    "algorithm": "register_algorithms",
}
# Chimera's built-in plugins, by module name (the core never imports them by name, so they
# stay a layer above it), loaded in this order before any entry-point plugin.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "chimera_plugins.tools",
    "chimera_plugins.rewards",
    "chimera_plugins.adapters",
    "chimera_plugins.algorithms",
)
ENTRY_POINT_GROUP = "chimera"
ALLOW_ENV = "CHIMERA_PLUGINS"
# Modules loaded as plugins without installing them (a plugin under development, a test's
# plugin); an environment variable, so the rollout processes a stage spawns load them too.
MODULES_ENV = "CHIMERA_PLUGIN_MODULES"
BUILTIN_DIST = "chimera-lab (built-in)"


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its name, the package it came from and whether it is built in."""

    name: str
    package: str
    builtin: bool


@dataclass(frozen=True)
class Registered:
    """One registered object and the plugin that registered it."""

    kind: Kind
    name: str
    obj: Any
    plugin: PluginInfo


class PluginRegistry:
    """Everything the loaded plugins registered, looked up by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, plugins: list[PluginInfo]) -> None:
        self.pm = pm
        self.plugins = plugins
        self._items: dict[Kind, dict[str, Registered]] = {k: {} for k in KINDS}

    def add(self, kind: Kind, obj: Any, plugin: PluginInfo) -> None:
        """Validate and record one object; duplicates and malformed objects are errors."""
        name = getattr(obj, "name", None)
        where = f"plugin {plugin.name!r} (package {plugin.package})"
        if not isinstance(name, str) or not name:
            raise PluginError(f"{where} registered a {kind} without a string 'name': {obj!r}")
        if missing := [a for a in REQUIRED_ATTRS[kind] if not hasattr(obj, a)]:
            raise PluginError(f"{where} registered {kind} {name!r} without: {', '.join(missing)}")
        if existing := self._items[kind].get(name):
            raise PluginError(
                f"{where} registered {kind} {name!r}, already registered by plugin "
                f"{existing.plugin.name!r} (package {existing.plugin.package})"
            )
        self._items[kind][name] = Registered(kind, name, obj, plugin)

    def names(self, kind: Kind) -> list[str]:
        """Registered names of one kind, sorted."""
        return sorted(self._items[kind])

    def entries(self, kind: Kind | None = None) -> Iterator[Registered]:
        """Every registration, optionally of one kind."""
        for k in [kind] if kind else KINDS:
            yield from (self._items[k][n] for n in sorted(self._items[k]))

    def get(self, kind: Kind, name: str) -> Any:
        """The object registered under name; unknown names list the known ones."""
        try:
            return self._items[kind][name].obj
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise PluginError(f"unknown {kind} {name!r} (known: {known})") from None

    def origin(self, kind: Kind, name: str) -> str:
        """Where a registered object comes from, for messages: "plugin 'x' (package y)"."""
        entry = self._items[kind].get(name)
        if entry is None:
            return "no registered plugin"
        return f"plugin {entry.plugin.name!r} (package {entry.plugin.package})"

    def tool(self, name: str) -> Tool:
        """A registered tool by name."""
        tool: Tool = self.get("tool", name)
        return tool

    def reward(self, name: str) -> Reward:
        """A registered reward by name."""
        reward: Reward = self.get("reward", name)
        return reward

    def adapter(self, name: str) -> TraceAdapter:
        """A registered trace adapter by name."""
        adapter: TraceAdapter = self.get("adapter", name)
        return adapter

    def algorithm(self, name: str) -> Algorithm:
        """A registered training algorithm by name."""
        algorithm: Algorithm = self.get("algorithm", name)
        return algorithm

    def call_one(self, hook_name: str, plugin: object, **kwargs: Any) -> Any:
        """Call one plugin's implementation of a hook, through pluggy."""
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; a plugin that raises is logged, not fatal."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            try:
                self.call_one(hook_name, impl.plugin, **kwargs)
            except Exception as exc:  # a listener's bug must not fail the rollout or the stage
                _log.warning(
                    "plugin %r failed in %s: %s: %s",
                    impl.plugin_name,
                    hook_name,
                    type(exc).__name__,
                    exc,
                )


def allowed_external(environ: dict[str, str] | os._Environ[str] | None = None) -> set[str] | None:
    """External plugins allowed by ``CHIMERA_PLUGINS`` (names or packages); None = all."""
    raw = (environ if environ is not None else os.environ).get(ALLOW_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _builtin_modules() -> list[ModuleType]:
    modules = []
    for mod_name in BUILTIN_PLUGINS:
        try:
            modules.append(importlib.import_module(mod_name))
        except Exception as exc:
            raise PluginError(
                f"built-in plugin {mod_name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
    return modules


def _check_allowed(allow: set[str], installed: list[EntryPoint], modules_raw: str) -> None:
    """Refuse allow-list names that match no plugin: a typo would drop a plugin unseen."""
    known = {*BUILTIN_PLUGINS, *(p.strip() for p in modules_raw.split(",") if p.strip())}
    listed = []
    for ep in installed:
        package = ep.dist.name if ep.dist else "unknown package"
        known |= {ep.name, package}
        listed.append(f"{ep.name} (package {package})")
    if unknown := sorted(allow - known):
        raise PluginError(
            f"{ALLOW_ENV} names no installed plugin: {', '.join(unknown)} (installed external "
            f"plugins: {', '.join(listed) or 'none'}; the built-ins always load)"
        )


def build_registry(environ: dict[str, str] | None = None) -> PluginRegistry:
    """Load built-ins and allowed entry-point plugins, then collect their registrations."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    loaded: list[tuple[PluginInfo, object]] = []
    for module in _builtin_modules():
        info = PluginInfo(module.__name__, BUILTIN_DIST, builtin=True)
        pm.register(module, name=info.name)
        loaded.append((info, module))

    allow = allowed_external(environ)
    installed = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    modules_raw = (environ if environ is not None else os.environ).get(MODULES_ENV, "")
    if allow is not None:
        _check_allowed(allow, installed, modules_raw)
    for ep in installed:
        package = ep.dist.name if ep.dist else "unknown package"
        if allow is not None and ep.name not in allow and package not in allow:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {ep.name!r} (package {package}) failed to import {ep.value}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if pm.is_registered(plugin) or pm.has_plugin(ep.name):
            raise PluginError(f"plugin {ep.name!r} (package {package}) is registered twice")
        pm.register(plugin, name=ep.name)
        loaded.append((PluginInfo(ep.name, package, builtin=False), plugin))

    for mod_name in [part.strip() for part in modules_raw.split(",") if part.strip()]:
        try:
            module = importlib.import_module(mod_name)
        except Exception as exc:
            raise PluginError(
                f"plugin module {mod_name!r} ({MODULES_ENV}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not pm.is_registered(module):
            pm.register(module, name=mod_name)
            loaded.append((PluginInfo(mod_name, f"module {mod_name}", builtin=False), module))

    registry = PluginRegistry(pm, [info for info, _ in loaded])
    for kind, hook_name in REGISTER_HOOKS.items():
        for info, plugin in loaded:
            if getattr(plugin, hook_name, None) is None:
                continue
            try:
                registry.call_one(
                    hook_name,
                    plugin,
                    register=lambda obj, _k=kind, _i=info: registry.add(_k, obj, _i),
                )
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {info.name!r} (package {info.package}) failed in {hook_name}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    return registry


@cache
def get_registry() -> PluginRegistry:
    """The process-wide registry (built once, from the environment at first use)."""
    return build_registry()
