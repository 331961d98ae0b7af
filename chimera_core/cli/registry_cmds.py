"""``chimera registry``: versions per model alias, champions, promote, roll back, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from chimera_core.cli.common import ProfileOption, console, load_profile
from chimera_core.config import ChimeraConfig
from chimera_core.errors import ChimeraError
from chimera_core.model_registry import BASE, ModelRegistry
from chimera_core.serving.model_sets import POLICY_ALIAS
from chimera_core.training.checkpoint import require_empty_dir


def _registry(config: ChimeraConfig) -> ModelRegistry:
    return ModelRegistry.for_config(config)


def _require_alias(config: ChimeraConfig, alias: str) -> None:
    """Refuse an alias the profile does not serve: a typo would get a champion of its own."""
    known = [*config.models, POLICY_ALIAS]
    if alias not in known:
        raise ChimeraError(
            f"unknown model alias {alias!r} in profile {config.profile!r} "
            f"(expected one of: {', '.join(known)})"
        )


def register(app: typer.Typer) -> None:
    """Attach ``registry``."""
    group = typer.Typer(help="Trained model versions and champions.", no_args_is_help=True)

    @group.command("list")
    def list_(profile: ProfileOption = None) -> None:
        """Every alias's versions with lineage; the champion is marked."""
        registry = _registry(load_profile(profile))
        table = Table(title="model registry")
        for column in ("alias", "version", "parent", "stage", "run", "created", "champion"):
            table.add_column(column)
        aliases = registry.aliases()
        if not aliases:
            console.print("no trained versions yet: every alias serves base")
            return
        for alias in aliases:
            champion = registry.champion(alias)
            for version in [BASE, *registry.versions(alias)]:
                v = registry.get(alias, version)
                mark = "[bold green]champion" if version == champion else ""
                table.add_row(alias, version, v.parent, v.stage, v.run_id, v.created_at, mark)
        console.print(table)

    @group.command("promote")
    def promote(
        alias: Annotated[str, typer.Argument(help="Model alias (junior, senior, ...).")],
        version: Annotated[str, typer.Argument(help="Registered version (or base).")],
        reason: Annotated[str, typer.Option(help="Recorded with the promotion.")] = "manual",
        profile: ProfileOption = None,
    ) -> None:
        """Make a version the alias's champion (the next rollouts serve it)."""
        config = load_profile(profile)
        _require_alias(config, alias)
        registry = _registry(config)
        registry.promote(alias, version, reason)
        console.print(f"{alias}: champion is now [bold]{version}[/]")

    @group.command("rollback")
    def rollback(
        alias: Annotated[str, typer.Argument(help="Model alias (junior, senior, ...).")],
        reason: Annotated[str, typer.Option(help="Recorded with the rollback.")] = "",
        profile: ProfileOption = None,
    ) -> None:
        """Make the previous champion the champion again."""
        config = load_profile(profile)
        _require_alias(config, alias)
        registry = _registry(config)
        was = registry.champion(alias)
        back = registry.rollback(alias, reason)
        console.print(f"{alias}: champion rolled back from {was} to [bold]{back}[/]")

    @group.command("export")
    def export(
        alias: Annotated[str, typer.Argument(help="Model alias (junior, senior, ...).")],
        version: Annotated[str, typer.Argument(help="Registered adapter version.")],
        merged: Annotated[
            Path,
            typer.Option("--merged", help="New (or empty) directory for the merged HF checkpoint."),
        ],
        profile: ProfileOption = None,
    ) -> None:
        """Merge an adapter version into its base: a plain HF checkpoint to deploy elsewhere."""
        from chimera_core.serving.model_store import resolve_checkpoint

        config = load_profile(profile)
        registry = _registry(config)
        # The cheap refusals first: resolving the base may have to prepare it (minutes).
        require_empty_dir(merged)
        registry.fetch_adapter(alias, version)
        if alias not in config.models:
            raise ChimeraError(
                f"model {alias!r} is not in this profile's models ({', '.join(config.models)}); "
                "its base checkpoint is unknown"
            )
        base_dir = resolve_checkpoint(config.models[alias].checkpoint, config)
        registry.export_merged(alias, version, base_dir, merged)
        console.print(f"{alias} {version} merged into {base_dir.name}: [bold]{merged}[/]")

    app.add_typer(group, name="registry")
