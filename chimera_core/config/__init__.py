"""Configuration: pydantic models and the profile loader."""

from chimera_core.config.loader import load_config, redacted_dump, resolve_profile_path
from chimera_core.config.models import ChimeraConfig, ModelEndpointConfig, RoleConfig

__all__ = [
    "ChimeraConfig",
    "ModelEndpointConfig",
    "RoleConfig",
    "load_config",
    "redacted_dump",
    "resolve_profile_path",
]
