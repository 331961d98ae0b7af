"""A stage result as a few lines for the task log (the full result is the task's XCom)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_OUTPUTS = 5
MAX_METRICS = 6
MAX_VALUE_CHARS = 72


def duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _short(value: Any) -> str | None:
    """A metric value in one short piece of text, or None when it is too long to be a key one."""
    if value is None or isinstance(value, bool | int | str):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = json.dumps(value, separators=(", ", ": "), default=str)
    if len(text) <= MAX_VALUE_CHARS:
        return text
    if isinstance(value, str):
        return text[: MAX_VALUE_CHARS - 1] + "…"
    return None


def result_summary(result: Mapping[str, Any], wall_s: float | None = None) -> list[str]:
    """The lines that end a stage task's log: what ran, how long, where the outputs are, and
    the metrics short enough to read at a glance (scalars first)."""
    stage = result.get("stage", "?")
    run_id = result.get("run_id", "?")
    if result.get("resumed"):
        how = "had already finished for this run id: its result was reused"
    else:
        how = f"done in {duration(float(result.get('seconds') or 0.0))}"
        if wall_s is not None:
            how += f" ({duration(wall_s)} with start-up)"
    peak = result.get("peak_rss_mb") or 0
    lines = [f"stage {stage} {how}" + (f", peak RSS {peak:.0f} MiB" if peak else "")]
    lines.append(f"  run id: {run_id}")

    outputs = dict(result.get("outputs") or {})
    for name, uri in list(outputs.items())[:MAX_OUTPUTS]:
        lines.append(f"  output {name}: {uri}")
    if len(outputs) > MAX_OUTPUTS:
        lines.append(f"  ... {len(outputs) - MAX_OUTPUTS} more outputs")

    metrics = dict(result.get("metrics") or {})
    shown: list[tuple[str, str]] = []
    scalar_first = sorted(metrics.items(), key=lambda kv: isinstance(kv[1], dict | list | tuple))
    for name, value in scalar_first:
        text = _short(value)
        if text is not None and len(shown) < MAX_METRICS:
            shown.append((name, text))
    for name, text in shown:
        lines.append(f"  {name}: {text}")
    if hidden := len(metrics) - len(shown):
        lines.append(f"  ... {hidden} more metrics")
    lines.append("  full result: this task's XCom (return_value)")
    return lines
