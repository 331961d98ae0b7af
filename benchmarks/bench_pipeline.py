"""The main job per stage: wall time and peak memory of ``make run``'s pipeline.

Runs ``chimera pipeline run --profile local`` (the quick start's job) with its artifacts in a
temporary directory, then reads each stage's ``runs/<id>/<stage>/result.json``: seconds and
peak RSS over the stage's process tree (model servers and runner processes included).

``CHIMERA_BENCH_PIPELINE_RUN=<run id>`` reads a run that already finished in the local
artifacts (``.chimera/artifacts``) instead of running a new one (the fresh run takes ~15 min).

Run: ``python -m benchmarks.run pipeline``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, bench_config, result, skip_real


def fresh_run() -> tuple[Path, str, float]:
    """Run the local profile's whole pipeline; return (artifacts root, run id, wall seconds)."""
    from chimera_core.pipeline import run_pipeline

    workdir = Path(tempfile.mkdtemp(prefix="chimera-bench-pipeline-"))
    config = bench_config(workdir=workdir)
    run_id = "bench-pipeline"
    start = time.perf_counter()
    run_pipeline(config, config.orchestration.stages, run_id)
    return Path(config.artifacts.local_root), run_id, time.perf_counter() - start


def stage_results(root: Path, run_id: str) -> list[dict[str, Any]]:
    """Each stage's stored result, in the order the stages finished."""
    found = [json.loads(p.read_text()) for p in (root / "runs" / run_id).glob("*/result.json")]
    if not found:
        raise SystemExit(f"no stage results under {root / 'runs' / run_id}")
    return sorted(found, key=lambda r: r["finished_at"])


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    if existing := os.environ.get("CHIMERA_BENCH_PIPELINE_RUN"):
        root, run_id, wall = REPO / ".chimera" / "artifacts", existing, None
    elif skip_real():
        return {}
    else:
        root, run_id, wall = fresh_run()
    stages = stage_results(root, run_id)
    out: dict[str, Any] = {}
    for r in stages:
        out[f"{r['stage']}_seconds"] = result(r["seconds"], "s")
        out[f"{r['stage']}_peak_rss"] = result(r["peak_rss_mb"] / 1024, "GiB")
    total = sum(r["seconds"] for r in stages)
    out["total_seconds"] = result(
        wall or total,
        "s",
        notes=f"pipeline run {run_id!r} of the local profile, finished "
        f"{stages[-1]['finished_at']}; stages: {', '.join(r['stage'] for r in stages)}",
    )
    out["max_peak_rss"] = result(max(r["peak_rss_mb"] for r in stages) / 1024, "GiB")
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
