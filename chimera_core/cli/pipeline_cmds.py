"""``chimera pipeline run`` and ``chimera evaluate``: the whole cycle under one run id."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from chimera_core.artifacts import open_store
from chimera_core.cli.common import ProfileOption, console
from chimera_core.config import load_config
from chimera_core.errors import ChimeraError
from chimera_core.registry import ModelRegistry
from chimera_core.rollouts.serving import ModelServing
from chimera_core.stages import StageResult, execute_stage, new_run_id, safe_run_id, stage_fn

# Stages that train on the GPU: a CUDA vLLM server holding its share of GPU memory is stopped first.
GPU_TRAINING = frozenset({"sft", "ppo"})


def run_pipeline(
    stages: list[str], profile: str | None, run_id: str, overrides: dict[str, Any] | None = None
) -> list[StageResult]:
    """Run stages in order; finished ones are reused, so a rerun with the run id resumes."""
    config = load_config(profile, overrides=overrides)
    for name in stages:
        stage_fn(name)  # fail on a typo before any work
    results: list[StageResult] = []
    start = time.perf_counter()
    store = open_store(config.artifacts)
    # One model server for the whole run: started by the first stage that needs it, a trained
    # adapter is loaded into it by name, and evaluate finds every set's adapters there.
    serving = ModelServing(config, ModelRegistry.for_config(config, store), run_id=run_id)
    try:
        for i, name in enumerate(stages, start=1):
            console.rule(f"[bold]{i}/{len(stages)} {name}[/]  run {run_id}")
            if name in GPU_TRAINING and config.serving.gpu_memory_utilization:
                serving.close()  # the trainers need the GPU memory; evaluate starts it again
            try:
                result = execute_stage(
                    stage_fn(name), name, config, run_id, store=store, serving=serving
                )
            except ChimeraError as exc:
                wrapped = ChimeraError(
                    f"stage {name!r} failed: {exc}\n"
                    f"resume with: chimera pipeline run --run-id {run_id}"
                )
                wrapped.exit_code = exc.exit_code  # a fault (1) stays a fault
                raise wrapped from None
            results.append(result)
            state = "reused" if result.resumed else f"{result.seconds:.0f}s"
            console.print(f"[green]✓[/] {name} ({state})")
    finally:
        serving.close()
    _summary(results, run_id, time.perf_counter() - start)
    return results


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
        config = load_config(profile)
        chosen = [s.strip() for s in stages.split(",")] if stages else config.orchestration.stages
        run_pipeline(chosen, profile, safe_run_id(run_id) if run_id else new_run_id("pipeline"))

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
        run_pipeline(["ingest", "evaluate"], profile, new_run_id("evaluate"), overrides)
