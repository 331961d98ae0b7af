"""``chimera stage NAME --run-id ID``: run one pipeline stage (what Airflow tasks call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from chimera_core.cli.common import ProfileOption, console
from chimera_core.errors import SKIP_EXIT_CODE, ChimeraError
from chimera_core.plugins import load_checked_config
from chimera_core.stages import execute_stage, safe_run_id, stage_fn

LIMITED_STAGES = ("gather", "evaluate")  # the stages that run a number of tasks


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
        only: Annotated[
            str | None,
            typer.Option(
                help=f"Comma list of selected stages; exit {SKIP_EXIT_CODE} if not in it."
            ),
        ] = None,
        limit: Annotated[
            int | None,
            typer.Option(min=1, help="Tasks to run (gather, evaluate); overrides the profile."),
        ] = None,
        wait: Annotated[
            bool,
            typer.Option(
                help="If another process is running this stage of the run, wait for it and "
                "reuse its result (default: exit 2 at once, naming it)."
            ),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        xcom_file: Annotated[
            Path | None, typer.Option(help="Also write the result JSON here (Airflow XCom).")
        ] = None,
    ) -> None:
        """Run one stage for a run id; a finished stage is reused unless --force."""
        stage_fn(name)  # unknown names and run ids fail before anything else
        run_id = safe_run_id(run_id)
        if only is not None and name not in {s.strip() for s in only.split(",") if s.strip()}:
            console.print(f"stage [bold]{name}[/] not selected ({only}); skipped")
            raise typer.Exit(SKIP_EXIT_CODE)
        overrides: dict[str, Any] = {}
        if limit is not None:
            if name not in LIMITED_STAGES:
                raise ChimeraError(
                    f"--limit applies to {', '.join(LIMITED_STAGES)}, not stage {name!r}"
                )
            overrides[f"stages.{name}.n_tasks"] = limit
        config = load_checked_config(profile, overrides=overrides)
        result = execute_stage(stage_fn(name), name, config, run_id, force=force, wait=wait)
        payload = result.model_dump(mode="json")
        if xcom_file is not None:
            xcom_file.parent.mkdir(parents=True, exist_ok=True)
            xcom_file.write_text(json.dumps(payload))
        if as_json:
            print(json.dumps(payload))
        else:
            state = "reused" if result.resumed else f"done in {result.seconds:.1f}s"
            console.print(f"stage [bold]{name}[/] ({result.run_id}): {state}")
            for key, uri in result.outputs.items():
                console.print(f"  {key}: {uri}")
            for key, value in result.metrics.items():
                console.print(f"  [dim]{key}:[/] {value}", highlight=False)
