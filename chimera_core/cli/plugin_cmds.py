"""``chimera plugins``: what is loaded and what each plugin registers."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from chimera_core.cli.common import console
from chimera_core.plugins import get_registry


def register(app: typer.Typer) -> None:
    """Attach the ``plugins`` group."""
    group = typer.Typer(help="Inspect plugins.", no_args_is_help=True)

    @group.command("list")
    def list_plugins(
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Each plugin with what it registers and the package it came from."""
        registry = get_registry()
        rows: list[dict[str, Any]] = []
        for info in registry.plugins:
            regs = [e for e in registry.entries() if e.plugin == info]
            rows.append(
                {
                    "plugin": info.name,
                    "package": info.package,
                    "builtin": info.builtin,
                    "registers": [f"{e.kind}:{e.name}" for e in regs],
                }
            )
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        table = Table(title="chimera plugins")
        table.add_column("plugin")
        table.add_column("package")
        table.add_column("registers", overflow="fold", no_wrap=False, min_width=28)
        for row in rows:
            table.add_row(row["plugin"], row["package"], "\n".join(row["registers"]) or "-")
        console.print(table)

    app.add_typer(group, name="plugins")
