"""The run report: what was evaluated, metric table, plots from measured data, stage costs.

Writes ``report.md``, ``report.html`` and PNGs into a directory; the evaluate stage publishes it.
Every plot is drawn from stored rollout records or a training stage's recorded steps; a plot
with no data is left out with a note, never filled with made-up points.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel, Field

from chimera_core.data.rollouts import RolloutRecord
from chimera_core.data.tasks import LABELS
from chimera_core.evaluation.metrics import RESAMPLED, EvalMetrics, PairedComparison

ROLLING = 10
TABLE_METRICS = (
    ("success_rate", "execution success rate"),
    ("mean_reward", "mean final reward"),
    ("decision_alignment", "decision alignment (GO↔yes, NO-GO↔no)"),
    ("exact_accuracy", "exact yes/no/maybe accuracy"),
    ("macro_f1", "macro-F1 (yes/no/maybe)"),
    ("mean_turns", "mean turns"),
    ("mean_tokens", "mean tokens per rollout"),
    ("mean_latency_s", "mean latency per rollout (s)"),
)


def learning_curve(rewards: Sequence[float], path: Path, title: str) -> Path | None:
    """Per-rollout reward with a rolling mean, in gathering order; None when there is no data."""
    if not rewards:
        return None
    x = np.arange(1, len(rewards) + 1)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(x, rewards, "o", alpha=0.45, label="rollout reward")
    # Trailing mean over up to ROLLING rollouts, so a short run still draws a line.
    rolling = [float(np.mean(rewards[max(0, i - ROLLING + 1) : i + 1])) for i in range(len(x))]
    ax.plot(x, rolling, "-", lw=2, label=f"mean of the last {ROLLING}")
    ax.set(xlabel="rollout", ylabel="final reward", title=title, ylim=(0, 1.05))
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def criteria_bars(metrics: dict[str, EvalMetrics], path: Path) -> Path | None:
    """Mean judge criteria and reward components per model set."""
    keys = sorted({k for m in metrics.values() for k in m.judge_criteria} | {
        f"[{k}]" for m in metrics.values() for k in m.reward_components
    })  # fmt: skip
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(max(6, len(keys) * 0.9), 3.8))
    width = 0.8 / len(metrics)
    for i, (name, m) in enumerate(metrics.items()):
        values = [
            m.reward_components.get(k[1:-1], 0.0)
            if k.startswith("[")
            else m.judge_criteria.get(k, 0.0)
            for k in keys
        ]
        ax.bar(np.arange(len(keys)) + i * width, values, width, label=name)
    ax.set_xticks(
        np.arange(len(keys)) + width * (len(metrics) - 1) / 2, keys, rotation=30, ha="right"
    )
    ax.set(ylim=(0, 1), ylabel="mean score", title="judge criteria and [reward components]")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_plot(metrics: dict[str, EvalMetrics], path: Path) -> Path | None:
    """Yes/no/maybe confusion matrices (rows: label; columns: the PI's answer)."""
    if not any(m.confusion for m in metrics.values()):
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    cols = [*LABELS, "none"]
    for ax, (name, m) in zip(axes[0], metrics.items(), strict=True):
        mat = np.asarray(m.confusion or [[0] * 4] * 3)
        ax.imshow(mat, cmap="Blues")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set_xticks(range(4), cols)
        ax.set_yticks(range(3), LABELS)
        ax.set(xlabel="answer", ylabel="label", title=name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"


def _fmt_some(values: dict[str, float], key: str) -> str:
    # A role with no output in a set (e.g. the supervisor LLM never asked because the bandit
    # chose) has no rate; 0 would read as "always invalid".
    return _fmt(values[key]) if key in values else "n/a"


def _protocol_md(record: RolloutRecord | None) -> str:
    if record is None:
        return "_not run_"
    protocol = record.state.get("final_protocol") or {}
    safety = ", ".join(map(str, protocol.get("safety_concerns") or []))
    steps = "<br>".join(
        f"{i + 1}. {html.escape(str(s))}" for i, s in enumerate(protocol.get("steps") or [])
    )
    return (
        f"**{html.escape(str(protocol.get('title', '(no protocol)')))}**<br>{steps}<br>"
        f"safety: {html.escape(safety or '-')}<br>"
        f"budget: {protocol.get('budget_usd', '-')} USD<br>"
        f"decision: **{record.final_decision}** (answer {record.final_answer}, "
        f"label {record.expected_decision}); reward {_fmt(record.reward or 0.0)}"
    )


class EvalSetup(BaseModel):
    """What the run evaluated on and how it scored: held-out tasks, training data, reward."""

    split: str
    dataset_version: str
    n_tasks: int = Field(description="Held-out tasks each model set ran.")
    n_gathered: int | None = Field(None, description="Training rollouts; None: no gather.")
    reward_weights: dict[str, float] = Field(default_factory=dict)
    decision_reward: str | None = None
    alignment_mode: str | None = None


class StageRun(BaseModel):
    """An earlier stage of this run: its cost and, for a training stage, its metrics."""

    stage: str
    seconds: float
    peak_rss_mb: float
    tier: str | None = Field(None, description="The tier a training stage trains; else None.")
    alias: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


ALIGNMENT_MODES = {
    "original": "GO↔yes, NO-GO↔no",
    "exact": "the PI's yes/no/maybe answer equals the label",
}


def _steps(value: Any) -> list[float]:
    # Measured per-step values only: anything but a list of numbers is no data.
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return []


def training_curve(run: StageRun, path: Path) -> Path | None:
    """Loss (and mean reward, where the algorithm logged it) per step; None without data."""
    losses, rewards = _steps(run.metrics.get("losses")), _steps(run.metrics.get("mean_rewards"))
    if not losses and not rewards:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    lines = []
    if losses:
        lines += ax.plot(range(1, len(losses) + 1), losses, "o-", color="C0", label="loss")
        ax.set_ylabel("loss")
    if rewards:
        # A second axis: loss and reward have unrelated scales.
        rax = ax.twinx() if losses else ax
        lines += rax.plot(
            range(1, len(rewards) + 1), rewards, "s-", color="C1", label="mean reward"
        )
        rax.set_ylabel("mean reward")
    ax.set(xlabel="training step", title=_training_title(run))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(handles=lines, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _training_title(run: StageRun) -> str:
    alias = f" (alias {run.alias})" if run.alias else ""
    algorithm = f", algorithm {run.metrics['algorithm']}" if run.metrics.get("algorithm") else ""
    return f"{run.stage} stage: {run.tier} tier{alias}{algorithm}"


def _row(label: str, cells: Iterable[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _setup_md(setup: EvalSetup) -> list[str]:
    lines = [
        f"- held-out tasks: **{setup.n_tasks}** of split `{setup.split}`, "
        f"dataset `{setup.dataset_version}`",
        "- training rollouts gathered by this run: "
        + ("none (no gather stage)" if setup.n_gathered is None else f"**{setup.n_gathered}**"),
    ]
    if setup.reward_weights:
        parts = ", ".join(f"{k} ({w:g})" for k, w in setup.reward_weights.items())
        lines.append(f"- final reward: weighted mean of {parts}")
    if setup.decision_reward:
        mode = setup.alignment_mode or "n/a"
        lines.append(
            f"- the decision maker's training reward (rewards.decision_reward, what the board "
            f"stage trains the PI on): `{setup.decision_reward}`; alignment mode `{mode}` "
            f"({ALIGNMENT_MODES.get(mode, 'n/a')})"
        )
    return lines


def _metrics_md(
    metrics: dict[str, EvalMetrics], weights: dict[str, float], decision_reward: str | None
) -> list[str]:
    names = list(metrics)
    lines = [_row("metric", names), "|---|" + "---|" * len(names)]
    for key, label in TABLE_METRICS:
        lines.append(_row(label, (_fmt(getattr(metrics[n], key)) for n in names)))
    first = metrics[names[0]]
    lines.append(
        _row(
            f"majority-class baseline ('{first.majority_label}'): accuracy / macro-F1",
            (
                f"{_fmt(metrics[n].majority_accuracy)} / {_fmt(metrics[n].majority_macro_f1)}"
                for n in names
            ),
        )
    )
    components = [*weights, *sorted({c for m in metrics.values() for c in m.reward_components})]
    for comp in dict.fromkeys(components):
        weight = f"weight {weights[comp]:g}" if comp in weights else "weight n/a"
        trains = ", trains the decision maker" if comp == decision_reward else ""
        lines.append(
            _row(
                f"reward: {comp} ({weight}{trains})",
                (_fmt_some(metrics[n].reward_components, comp) for n in names),
            )
        )
    per_role = (
        ("judge", "judge_criteria"),
        ("schema-valid", "schema_valid_rate"),
        ("truncated", "truncated_rate"),
    )
    for prefix, field in per_role:
        values = {n: getattr(m, field) for n, m in metrics.items()}
        for key in sorted({k for v in values.values() for k in v}):
            lines.append(_row(f"{prefix}: {key}", (_fmt_some(values[n], key) for n in names)))
    if components:
        lines += [
            "",
            "_reward rows: each component's mean over the succeeded rollouts; the final reward "
            "is their weighted mean, 0 for a failed rollout._",
        ]
    return lines


def _training_md(stages: Sequence[StageRun], out_dir: Path) -> tuple[list[str], dict[str, Any]]:
    # One plot per training stage this run ran, from its recorded steps; the rest say why not.
    lines: list[str] = []
    summary: dict[str, Any] = {}
    for run in (s for s in stages if s.tier):
        title = _training_title(run)
        lines += [f"### Training: {title}", ""]
        skipped = run.metrics.get("skipped")
        # Drawn even when nothing was registered: flat rewards are why, and worth seeing.
        path = training_curve(run, out_dir / f"training_{run.stage}.png")
        summary[run.stage] = {}
        if path:
            lines.append(f"![{title}]({path.name})")
            summary[run.stage]["plot"] = path.name
        if skipped or not path:
            reason = str(skipped or "no per-step loss or reward was recorded")
            lines.append(f"_skipped: {reason}_")
            summary[run.stage]["skipped"] = reason
        lines.append("")
    return lines, summary


def _stages_md(stages: Sequence[StageRun]) -> list[str]:
    if not stages:
        return []
    lines = ["## Earlier stages of this run", ""]
    lines += ["| stage | wall time (s) | peak RSS (MiB) |", "|---|---|---|"]
    lines += [f"| {s.stage} | {s.seconds:.1f} | {s.peak_rss_mb:.0f} |" for s in stages]
    return [*lines, ""]


def write_report(
    out_dir: Path,
    *,
    run_id: str,
    metrics: dict[str, EvalMetrics],
    comparisons: Sequence[PairedComparison],
    records: dict[str, list[RolloutRecord]],
    gathered_rewards: Sequence[float],
    model_sets: dict[str, dict[str, str]],
    notes: Sequence[str] = (),
    setup: EvalSetup | None = None,
    stages: Sequence[StageRun] = (),
) -> Path:
    """Write report.md, report.html, metrics.json and the PNGs; return the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(metrics)
    lines = [f"# Chimera run `{run_id}`", ""]
    if setup:
        lines += _setup_md(setup)
    for name in names:
        versions = ", ".join(f"{a}={v}" for a, v in sorted(model_sets.get(name, {}).items()))
        lines.append(f"- **{name}**: {versions or 'n/a'}")
    lines += ["", "## Metrics (held-out tasks)", ""]
    weights = setup.reward_weights if setup else {}
    lines += _metrics_md(metrics, weights, setup.decision_reward if setup else None)
    if comparisons:
        lines += ["", "## Paired comparison (challenger − baseline, same tasks)", ""]
        lines.append("| metric | pairs | baseline | challenger | delta | 95% CI | significant |")
        lines.append("|---|---|---|---|---|---|---|")
        for c in comparisons:
            lines.append(
                f"| {c.metric} | {c.n_pairs} | {_fmt(c.baseline)} | {_fmt(c.challenger)} | "
                f"{c.delta:+.3f} | [{c.ci_low:+.3f}, {c.ci_high:+.3f}] | "
                f"{'yes' if c.significant else 'no'} |"
            )
        if resampled := [c.metric for c in comparisons if c.metric in RESAMPLED]:
            lines += [
                "",
                f"_{', '.join(resampled)}: recomputed on each bootstrap resample of the tasks; "
                "the other rows resample per-task differences._",
            ]
    plots = [
        (
            "Reward over gathered rollouts",
            learning_curve(gathered_rewards, out_dir / "learning_curve.png", "gathered rollouts"),
        ),
        ("Judge criteria and reward components", criteria_bars(metrics, out_dir / "criteria.png")),
        ("Confusion matrices", confusion_plot(metrics, out_dir / "confusion.png")),
    ]
    lines += ["", "## Plots", ""]
    for title, path in plots:
        lines += [f"### {title}", "", f"![{title}]({path.name})" if path else "_no data_", ""]
    training_lines, training = _training_md(stages, out_dir)
    lines += training_lines
    lines += _stages_md(stages)
    lines += ["## Side by side: the same task, baseline vs challenger", ""]
    if len(names) >= 2:
        by_task = [{r.task_id: r for r in records.get(n, [])} for n in names[:2]]
        shared = [t for t in by_task[0] if t in by_task[1]][:2]
        for task_id in shared:
            lines += [f"### task {task_id}", "", f"| {names[0]} | {names[1]} |", "|---|---|"]
            lines.append(
                f"| {_protocol_md(by_task[0][task_id])} | {_protocol_md(by_task[1][task_id])} |"
            )
            lines.append("")
    else:
        lines.append("_only one model set was evaluated_")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    md = "\n".join(lines) + "\n"
    (out_dir / "report.md").write_text(md)
    import markdown

    body = markdown.markdown(md, extensions=["tables"])
    (out_dir / "report.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>Chimera report</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
        f"</style>{body}"
    )
    payload: dict[str, Any] = {
        "run_id": run_id,
        "setup": setup.model_dump() if setup else None,
        "metrics": {n: m.model_dump() for n, m in metrics.items()},
        "comparisons": [c.model_dump() for c in comparisons],
        "model_sets": model_sets,
        "training": training,
        "stages": [s.model_dump(include={"stage", "seconds", "peak_rss_mb"}) for s in stages],
        "notes": list(notes),
    }
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2))
    return out_dir / "report.md"
