"""Chimera's built-in plugins, registered through the same hooks as third-party ones.

They import only the public plugin API (``chimera_core.plugins``) and their own libraries;
``chimera_core.plugins.manager.BUILTIN_PLUGINS`` lists them.
"""
