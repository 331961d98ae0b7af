"""``chimera ingest`` and ``chimera data``: build and inspect the task dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from chimera_core.artifacts import open_store
from chimera_core.cli.common import ProfileOption, console
from chimera_core.config import load_config
from chimera_core.data.dataset import list_versions, load_task_dataset
from chimera_core.stages import execute_stage, new_run_id, safe_run_id, stage_fn


def _counts_table(counts: dict[str, dict[str, int]], totals: dict[str, int]) -> Table:
    labels = sorted(totals)
    table = Table(title="tasks per split and label")
    table.add_column("split")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right", style="bold")
    for split, per_label in counts.items():
        table.add_row(
            split, *(str(per_label.get(lb, 0)) for lb in labels), str(sum(per_label.values()))
        )
    table.add_row(
        "all", *(str(totals[lb]) for lb in labels), str(sum(totals.values())), style="bold"
    )
    return table


def register(app: typer.Typer) -> None:
    """Attach ``ingest`` and the ``data`` group."""

    @app.command("ingest")
    def ingest(
        profile: ProfileOption = None,
        data_file: Annotated[
            Path | None,
            typer.Option(help="Local PubMedQA file (ori_pqal.json, JSONL, parquet); default: Hub."),
        ] = None,
        split: Annotated[
            str | None, typer.Option(help="Split method: seed, official or stratified.")
        ] = None,
        test_ids: Annotated[
            Path | None, typer.Option(help="PMIDs of the test split (for --split official).")
        ] = None,
        train_fraction: Annotated[
            float | None, typer.Option(help="Train share (seed, stratified).")
        ] = None,
        seed: Annotated[int | None, typer.Option(help="Shuffle seed (stratified).")] = None,
        run_id: Annotated[str | None, typer.Option(help="Run id (default: a new one).")] = None,
    ) -> None:
        """Load PubMedQA, validate, split, and publish a versioned task dataset."""
        # Checked first: a run id refused after the stage ran would leave CURRENT.json moved.
        run_id = safe_run_id(run_id) if run_id is not None else new_run_id("ingest")
        overrides: dict[str, Any] = {}
        if data_file is not None:
            overrides |= {"data.source": "file", "data.file": str(data_file)}
        for key, value in {
            "data.split": split,
            "data.test_ids_file": str(test_ids) if test_ids else None,
            "data.train_fraction": train_fraction,
            "data.seed": seed,
        }.items():
            if value is not None:
                overrides[key] = value
        config = load_config(profile, overrides=overrides)
        with console.status("reading and validating PubMedQA..."):
            result = execute_stage(stage_fn("ingest"), "ingest", config, run_id, force=True)
        m = result.metrics
        console.print(_counts_table(m["counts"], m["label_totals"]))
        console.print(
            f"dataset [bold]{result.outputs['dataset_version']}[/] -> {result.outputs['tasks']}"
        )

    group = typer.Typer(help="Inspect task datasets.", no_args_is_help=True)

    @group.command("show")
    def show(
        profile: ProfileOption = None,
        version: Annotated[
            str | None, typer.Option(help="Dataset version (default: current).")
        ] = None,
        split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
        limit: Annotated[int, typer.Option("-n", "--limit", help="Rows to show.")] = 5,
    ) -> None:
        """Print a dataset's counts and a sample of its tasks."""
        config = load_config(profile)
        manifest, tasks = load_task_dataset(open_store(config.artifacts), version)
        console.print(
            f"[bold]{manifest.version}[/] from {manifest.source} ({manifest.n_tasks} tasks)"
        )
        console.print(_counts_table(manifest.counts, manifest.label_totals))
        sample = [t for t in tasks if split is None or t.split == split][:limit]
        table = Table(title="sample", show_lines=True)
        for col in ("id", "split", "label", "goal", "context"):
            table.add_column(col, overflow="fold")
        for t in sample:
            ctx = t.context if len(t.context) < 160 else t.context[:157] + "..."
            table.add_row(t.id, t.split, t.expected_decision, t.goal, ctx)
        console.print(table)

    @group.command("versions")
    def versions(profile: ProfileOption = None) -> None:
        """List published dataset versions."""
        config = load_config(profile)
        for v in list_versions(open_store(config.artifacts)):
            console.print(v)

    app.add_typer(group, name="data")
