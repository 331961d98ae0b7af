"""``chimera stage NAME --run-id ID``: run one pipeline stage (what Airflow tasks call)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from chimera_core.cli.common import ProfileOption, console, load_profile
from chimera_core.stages import execute_stage, stage_fn


def register(app: typer.Typer) -> None:
    """Attach ``stage``."""

    @app.command("stage")
    def stage(
        name: Annotated[str, typer.Argument(help="Stage name (ingest, gather, sft, ...).")],
        run_id: Annotated[str, typer.Option(help="Run id shared by the stages of one run.")],
        profile: ProfileOption = None,
        force: Annotated[
            bool, typer.Option(help="Redo even if the stage already finished.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Run one stage for a run id; a finished stage is reused unless --force."""
        config = load_profile(profile)
        result = execute_stage(stage_fn(name), name, config, run_id, force=force)
        if as_json:
            print(json.dumps(result.model_dump(mode="json")))
        else:
            state = "reused" if result.resumed else f"done in {result.seconds:.1f}s"
            console.print(f"stage [bold]{name}[/] ({run_id}): {state}")
            for key, uri in result.outputs.items():
                console.print(f"  {key}: {uri}")
