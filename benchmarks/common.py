"""Helpers shared by the benchmarks: result dicts, configs, task data, timing arithmetic."""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CHIMERA_SHARED_DIR", REPO.parent / "shared"))


def result(
    value: float | None,
    unit: str,
    *,
    goal: str | None = None,
    met: bool | None = None,
    notes: str | None = None,
) -> dict[str, Any]:
    """One row of the results table (the runner's format)."""
    out: dict[str, Any] = {"value": value, "unit": unit}
    if goal is not None:
        out["goal"] = goal
        out["met"] = met
    if notes:
        out["notes"] = notes
    return out


def at_most(
    value: float, limit: float, unit: str = "x", notes: str | None = None
) -> dict[str, Any]:
    """A result whose goal is ``value <= limit``."""
    return result(value, unit, goal=f"<= {limit}", met=value <= limit, notes=notes)


def at_least(
    value: float, limit: float, unit: str = "x", notes: str | None = None
) -> dict[str, Any]:
    """A result whose goal is ``value >= limit``."""
    return result(value, unit, goal=f">= {limit}", met=value >= limit, notes=notes)


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Total time covered by at least one (start, end) interval (overlaps counted once)."""
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return total


def median(values: Sequence[float]) -> float:
    """The median (of repeated, interleaved measurements)."""
    return float(statistics.median(values))


def pubmedqa_file() -> Path | None:
    """The local PQA-L file: ``CHIMERA_PUBMEDQA_FILE``, else ``../shared/data/pubmedqa``."""
    env = os.environ.get("CHIMERA_PUBMEDQA_FILE")
    path = Path(env) if env else SHARED / "data" / "pubmedqa" / "ori_pqal.json"
    return path if path.is_file() else None


def require_pubmedqa() -> Path:
    """The PQA-L file, or a clear error (the lab benchmarks need real tasks)."""
    path = pubmedqa_file()
    if path is None:
        raise SystemExit(
            "PubMedQA data not found: set CHIMERA_PUBMEDQA_FILE=.../ori_pqal.json (make bench sets "
            "it from ../shared/data/pubmedqa)"
        )
    os.environ.setdefault("CHIMERA_PUBMEDQA_FILE", str(path))
    return path


def bench_config(overrides: Mapping[str, Any] | None = None, workdir: Path | None = None) -> Any:
    """The local profile on the PubMedQA file, artifacts in ``workdir``, W&B off, plus overrides."""
    from chimera_core.config import load_config

    data_file = require_pubmedqa()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="chimera-bench-"))
    merged: dict[str, Any] = {
        "data.source": "file",
        "data.file": str(data_file),
        "artifacts.local_root": str(workdir / "artifacts"),
        "tracking.wandb_mode": "disabled",
        "tracking.wandb_dir": str(workdir / "wandb"),
        "tracking.metrics_jsonl": False,
        **(overrides or {}),
    }
    return load_config("local", overrides=merged, environ={})


def train_tasks(config: Any, n: int) -> list[Any]:
    """The first ``n`` training tasks of the configured split (what gather would run)."""
    from chimera_core.data.pubmedqa import load_tasks
    from chimera_core.data.splits import seed_split

    tasks = seed_split(load_tasks(config.data), config.data.train_fraction)
    return [t for t in tasks if t.split == "train"][:n]


def skip_real() -> bool:
    """``CHIMERA_BENCH_SKIP_REAL=1``: leave out the measurements that run the real model."""
    return os.environ.get("CHIMERA_BENCH_SKIP_REAL", "") not in ("", "0")
