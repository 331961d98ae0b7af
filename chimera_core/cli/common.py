"""Shared CLI plumbing: the console, profile loading and error-to-exit-code mapping."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from chimera_core.config import ChimeraConfig
from chimera_core.plugins import load_checked_config

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="Profile name in configs/ or a YAML path (default: $CHIMERA_PROFILE or 'local').",
    ),
]


def load_profile(profile: str | None) -> ChimeraConfig:
    """Load the profile for a command; check its plugin names and algorithm options too."""
    return load_checked_config(profile)
