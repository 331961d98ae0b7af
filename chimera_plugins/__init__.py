"""Chimera's built-in plugins, registered through the same hooks as third-party ones."""

# Module names, loaded in this order before any entry-point plugin.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "chimera_plugins.tools",
    "chimera_plugins.rewards",
    "chimera_plugins.adapters",
    "chimera_plugins.algorithms",
)
