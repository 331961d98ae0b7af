"""``chimera pipeline run`` and ``chimera evaluate``: the whole cycle under one run id."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from chimera_core.cli.common import ProfileOption, console
from chimera_core.config import ChimeraConfig, load_config
from chimera_core.pipeline import PipelineResult, run_pipeline
from chimera_core.stages import StageResult, new_run_id, safe_run_id


def _run(config: ChimeraConfig, stages: list[str], run_id: str) -> PipelineResult:
    def started(i: int, name: str) -> None:
        console.rule(f"[bold]{i}/{len(stages)} {name}[/]  run {run_id}")

    def finished(result: StageResult) -> None:
        state = "reused" if result.resumed else f"{result.seconds:.0f}s"
        console.print(f"[green]✓[/] {result.stage} ({state})")

    outcome = run_pipeline(config, stages, run_id, on_stage=started, on_result=finished)
    _summary(outcome.results, run_id, outcome.seconds)
    return outcome


def _summary(results: list[StageResult], run_id: str, seconds: float) -> None:
    table = Table(title=f"pipeline {run_id}: {seconds / 60:.1f} min")
    table.add_column("stage")
    table.add_column("time", justify="right")
    table.add_column("peak RSS", justify="right")
    table.add_column("result", overflow="fold")
    for r in results:
        shown = {k: v for k, v in r.metrics.items() if isinstance(v, int | float | str)}
        brief = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(shown.items())[:5]
        )
        table.add_row(
            r.stage,
            f"{r.seconds:.0f}s" + (" (reused)" if r.resumed else ""),
            f"{r.peak_rss_mb:,.0f} MiB",
            brief,
        )
    console.print(table)
    for r in results:
        if "report_local" in r.outputs:
            console.print(f"report: [bold]{r.outputs['report_local']}[/] ({r.outputs['report']})")
        if r.stage == "promote":
            console.print(f"promotion: {r.metrics.get('reason')}")


def register(app: typer.Typer) -> None:
    """Attach ``pipeline`` and ``evaluate``."""
    group = typer.Typer(help="Run the whole self-improvement cycle.", no_args_is_help=True)

    @group.command("run")
    def run(
        profile: ProfileOption = None,
        run_id: Annotated[
            str | None, typer.Option(help="Resume this run (default: a new one).")
        ] = None,
        stages: Annotated[
            str | None, typer.Option(help="Comma list (default: orchestration.stages).")
        ] = None,
    ) -> None:
        """ingest -> gather -> sft -> ppo -> bandit -> evaluate -> promote, resumable."""
        run_id = safe_run_id(run_id) if run_id is not None else new_run_id("pipeline")
        config = load_config(profile)
        chosen = [s.strip() for s in stages.split(",")] if stages else config.orchestration.stages
        _run(config, chosen, run_id)

    app.add_typer(group, name="pipeline")

    @app.command("evaluate")
    def evaluate(
        model_set: Annotated[
            str, typer.Option(help="base, champion, or a registered version id.")
        ] = "champion",
        profile: ProfileOption = None,
        tasks: Annotated[
            int | None, typer.Option(help="Held-out tasks (default: profile).")
        ] = None,
    ) -> None:
        """Evaluate a model set against the champion on held-out tasks, with a report."""
        overrides: dict[str, Any] = {"stages.evaluate.model_set": model_set}
        if tasks:
            overrides["stages.evaluate.n_tasks"] = tasks
        config = load_config(profile, overrides=overrides)
        _run(config, ["ingest", "evaluate"], new_run_id("evaluate"))
