"""``chimera config``: inspect the resolved configuration."""

from __future__ import annotations

import json

import typer
import yaml
from rich.syntax import Syntax

from chimera_core.cli.common import ProfileOption, console, load_profile
from chimera_core.config import redacted_dump, resolve_profile_path


def register(app: typer.Typer) -> None:
    """Attach the ``config`` group."""
    group = typer.Typer(help="Inspect configuration profiles.", no_args_is_help=True)

    @group.command("show")
    def show(
        profile: ProfileOption = None,
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
    ) -> None:
        """Print the resolved config (profile + CHIMERA_* overrides), secrets redacted."""
        config = load_profile(profile)
        data = redacted_dump(config)
        if as_json:
            print(json.dumps(data, indent=2))
            return
        # The file the profile argument names, as load_profile resolved it (a path stays a path).
        console.print(f"[dim]# profile {config.profile}: {resolve_profile_path(profile)}")
        console.print(Syntax(yaml.safe_dump(data, sort_keys=False), "yaml"))

    @group.command("validate")
    def validate(profile: ProfileOption = None) -> None:
        """Check a profile; list every problem with its key path."""
        config = load_profile(profile)
        console.print(f"[green]ok[/] profile {config.profile!r} is valid")

    app.add_typer(group, name="config")
