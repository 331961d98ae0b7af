"""``chimera run-task`` and ``chimera graph``: run one task through the lab, draw the workflow."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from chimera_core.cli.common import ProfileOption, console
from chimera_core.config import ChimeraConfig
from chimera_core.data.pubmedqa import load_tasks, source_description
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ChimeraError
from chimera_core.lab import ConfigModelProvider, LabEvent, build_graph, run_task, state_to_json
from chimera_core.lab.drawing import role_tiers, write_drawing
from chimera_core.lab.run import usage_by_role
from chimera_core.lab.supervisor_policy import SupervisorPolicy
from chimera_core.model_registry import ModelRegistry
from chimera_core.plugins import load_checked_config
from chimera_core.serving.model_sets import serve_model_set

RUNS_DIR = Path(".chimera/runs")
SHOWN_CHARS = 400  # a tiny model can ramble for hundreds of tokens; the JSON keeps all of it


def _clip(value: object) -> str:
    text = str(value)
    return escape(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " ...")


def find_task(config: ChimeraConfig, task_id: str) -> ResearchTask:
    """The task with this PMID in the configured PubMedQA source."""
    tasks = load_tasks(config.data)
    for task in tasks:
        if task.id == task_id:
            return task
    examples = ", ".join(t.id for t in tasks[:3])
    raise ChimeraError(
        f"task {task_id!r} not found in {source_description(config.data)} "
        f"({len(tasks)} tasks, e.g. {examples})"
    )


def adhoc_task(question: str, context: str) -> ResearchTask:
    """A task from the command line; it has no label (the placeholder is never shown)."""
    digest = hashlib.sha1(f"{question}\n{context}".encode()).hexdigest()[:10]
    return ResearchTask(
        id=f"adhoc-{digest}", goal=question, context=context, expected_decision="maybe"
    )


@dataclass
class ServedModels:
    """What a run-task uses: a version per alias, and the supervisor's bandit policy if any."""

    name: str
    versions: dict[str, str]
    registry: ModelRegistry
    policy: SupervisorPolicy | None = None
    policy_version: str | None = None

    def table(self) -> Table:
        """Which checkpoint each alias runs, and who picks the hypothesis."""
        table = Table(title=f"model set: {self.name}", show_header=False, box=None)
        for alias, version in self.versions.items():
            table.add_row(alias, version)
        table.add_row(
            "supervisor", f"bandit policy {self.policy_version}" if self.policy else "LLM"
        )
        return table


def resolve_models(config: ChimeraConfig, name: str) -> ServedModels:
    """The registry's versions for a set (``champion`` or ``base``) and its bandit policy."""
    from chimera_core.rollouts.policies import BanditSupervisorPolicy
    from chimera_core.serving.model_sets import POLICY_ALIAS, bandit_policy_dir
    from chimera_core.training.bandit import LinearBanditPolicy

    registry = ModelRegistry.for_config(config)
    versions = registry.model_set(name, [*config.models, POLICY_ALIAS])
    policy_dir, policy_version = bandit_policy_dir(registry, versions.pop(POLICY_ALIAS))
    if policy_dir is None:
        return ServedModels(name, versions, registry)
    policy = BanditSupervisorPolicy(LinearBanditPolicy.load(Path(policy_dir)), str(policy_version))
    return ServedModels(name, versions, registry, policy, policy_version)


class Progress:
    """Prints each node as it finishes and keeps a spinner on the ones still running."""

    def __init__(self) -> None:
        self.running: dict[str, float] = {}
        self.status = console.status("starting the lab...")

    def __enter__(self) -> Progress:
        self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.__exit__(None, None, None)

    def __call__(self, event: LabEvent) -> None:
        if event.kind == "start":
            self.running[event.node] = event.elapsed_s
        elif event.kind == "tool":
            console.print(f"    [cyan]tool[/] {escape(event.node)} -> {escape(event.summary)}")
        else:
            began = self.running.pop(event.node, event.elapsed_s)
            took = event.elapsed_s - began
            summary = event.summary if len(event.summary) < 110 else event.summary[:107] + "..."
            name = escape(f"{event.node:<21}")
            console.print(f"[green]✓[/] [bold]{name}[/] [dim]{took:6.1f}s[/]  {escape(summary)}")
        if self.running:
            self.status.update(f"running {', '.join(self.running)}...")


def _protocol_panel(protocol: dict[str, Any]) -> Panel:
    steps = "\n".join(f"  {i}. {_clip(s)}" for i, s in enumerate(protocol["steps"], 1))
    safety = "\n".join(f"  - {_clip(s)}" for s in protocol.get("safety_concerns") or [])
    body = (
        f"[bold]{_clip(protocol.get('title', ''))}[/]\n\n[bold]Steps[/]\n{steps}\n\n"
        f"[bold]Safety concerns[/]\n{safety or '  (none listed)'}\n\n"
        f"[bold]Budget[/] ${float(protocol.get('budget_usd', 0)):,.0f}"
    )
    return Panel(body, title="final protocol", border_style="blue")


def _decision_panel(state: dict[str, Any]) -> Panel:
    decision = state.get("final_decision", "?")
    colour = "green" if decision == "GO" else "red"
    hypothesis = (state.get("refined_hypothesis") or {}).get("refined_hypothesis", "")
    body = (
        f"[bold {colour}]{decision}[/]   answer: [bold]{state.get('final_answer', '?')}[/]\n\n"
        f"[bold]Hypothesis[/] {_clip(hypothesis)}\n\n"
        f"[bold]Rationale[/] {_clip(state.get('final_rationale', ''))}"
    )
    return Panel(body, title="principal investigator", border_style=colour)


def _usage_table(state: dict[str, Any], wall_s: float) -> Table:
    table = Table(title=f"LLM usage (wall time {wall_s:.1f}s)")
    for col in ("role", "calls", "prompt tokens", "completion tokens", "seconds"):
        table.add_column(col, justify="left" if col == "role" else "right")
    totals = [0.0, 0.0, 0.0, 0.0]
    for role, u in usage_by_role(state).items():
        values = [u.get(k, 0.0) for k in ("calls", "prompt_tokens", "completion_tokens", "seconds")]
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        table.add_row(role, *(f"{v:.0f}" for v in values[:3]), f"{values[3]:.1f}")
    table.add_row("total", *(f"{v:.0f}" for v in totals[:3]), f"{totals[3]:.1f}", style="bold")
    return table


def default_out(task: ResearchTask) -> Path:
    """``.chimera/runs/run-task-<id>-<UTC time>.json``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return RUNS_DIR / f"run-task-{task.id}-{stamp}.json"


def register(app: typer.Typer) -> None:
    """Attach ``run-task`` and ``graph``."""

    @app.command("run-task")
    def run_task_cmd(
        task_id: Annotated[
            str | None, typer.Option("--task-id", help="PMID of a PubMedQA task.")
        ] = None,
        question: Annotated[
            str | None, typer.Option(help="An ad-hoc research question (with --context).")
        ] = None,
        context: Annotated[str | None, typer.Option(help="Study context for --question.")] = None,
        profile: ProfileOption = None,
        out: Annotated[
            Path | None, typer.Option(help="Where to write the final state (JSON).")
        ] = None,
        online: Annotated[
            bool | None, typer.Option("--online/--offline", help="Override tools.online.")
        ] = None,
        max_turns: Annotated[
            int | None, typer.Option(help="Turn limit (default: stages.gather.max_turns).")
        ] = None,
        json_mode: Annotated[
            bool, typer.Option("--json-mode/--no-json-mode", help="Ask for JSON-mode replies.")
        ] = True,
        model_set: Annotated[
            str,
            typer.Option(
                help="champion (the registry's current versions), base, or run:RUN_ID (the "
                "versions that run trained, champions for the rest)."
            ),
        ] = "champion",
    ) -> None:
        """Run one task through the research lab and show what each role did."""
        if (task_id is None) == (question is None) or (question is None) != (context is None):
            raise ChimeraError("give either --task-id, or --question together with --context")
        overrides = {"tools.online": online} if online is not None else {}
        config = load_checked_config(profile, overrides=overrides)
        if task_id is not None:
            with console.status("loading PubMedQA..."):
                task = find_task(config, task_id)
        else:
            assert question is not None and context is not None
            task = adhoc_task(question, context)
        console.print(Panel(escape(task.goal), title=f"task {task.id}", border_style="cyan"))
        graph = build_graph(config)
        models = resolve_models(config, model_set)
        console.print(models.table())
        start = time.perf_counter()
        with serve_model_set(config, models.versions, models.registry) as endpoints:
            provider = ConfigModelProvider(config, endpoints)
            run_start = time.perf_counter()
            with Progress() as progress:
                state = run_task(
                    task,
                    config,
                    provider,
                    graph=graph,
                    on_event=progress,
                    max_turns=max_turns,
                    json_mode=json_mode,
                    supervisor_policy=models.policy,
                )
        lab_s = time.perf_counter() - run_start
        wall_s = time.perf_counter() - start
        data = state_to_json(state)
        console.print(_protocol_panel(data["final_protocol"]))
        console.print(_decision_panel(data))
        if errors := data.get("errors"):
            console.print(
                f"[yellow]{len(errors)} recovered problem(s)[/] (see 'errors' in the JSON)"
            )
        console.print(_usage_table(data, lab_s))
        path = out or default_out(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "task": task.agent_view(),
            "profile": config.profile,
            "model_set": {**models.versions, "supervisor_policy": models.policy_version or "llm"},
            "wall_time_s": round(wall_s, 2),
            "lab_time_s": round(lab_s, 2),
            "state": data,
        }
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False))
        console.print(
            f"state -> {path}   turns {data.get('turn_count')}   "
            f"wall {wall_s:.1f}s (lab {lab_s:.1f}s)"
        )

    @app.command("graph")
    def graph_cmd(
        out: Annotated[Path, typer.Option(help="Output file: .png or .mmd (Mermaid).")],
        profile: ProfileOption = None,
    ) -> None:
        """Draw the lab's workflow for a profile's roles."""
        config = load_checked_config(profile)
        path = write_drawing(build_graph(config), out, role_tiers(config.roles))
        console.print(f"workflow -> {path}")
