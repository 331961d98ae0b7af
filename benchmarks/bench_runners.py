"""Runner scaling: real rollouts/minute with 1, 2 and 4 Agent Lightning runners, one server.

Every runner count runs the gather path (``rollouts.runner.run_rollouts``: store, LiteLLM proxy,
tracing, judge reward, records and spans stored) on the same first training tasks, against one
embedded SmolLM2 server that stays up for the whole benchmark. The rate is taken over the
rollouts' own spans (first start to last end), so session start-up is left out.

The ceiling is the server: on a CPU it batches concurrent requests, so n runners can go at most
as much faster as the server's aggregate tokens/s with n clients over one client. That ratio is
measured here too (same server, 64-token requests), and ``efficiency_N`` is the runners'
speed-up over it.

Run: ``python -m benchmarks.run runners`` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import bench_config, result, skip_real, train_tasks

RUNNERS = (1, 2, 4)
TASKS = {1: 2, 2: 4, 4: 4}  # rollouts per runner count: at least one per runner
SERVER_TOKENS = 64


def server_scaling(base_url: str, model: str, clients: int) -> float:
    """The server's aggregate tokens/s with ``clients`` simultaneous requests."""
    from benchmarks.bench_server import _server_concurrent

    return _server_concurrent(base_url, clients, SERVER_TOKENS, model)


def measure() -> dict[int, dict[str, float]]:
    """Rollouts/minute and the server's token rate for each runner count."""
    from benchmarks.bench_rollout import run_through_runner
    from chimera_core.serving.lifecycle import embedded_server

    workdir = Path(tempfile.mkdtemp(prefix="chimera-bench-runners-"))
    config = bench_config({"stages.gather.max_attempts": 1}, workdir)
    tasks = train_tasks(config, max(TASKS.values()))
    out: dict[int, dict[str, float]] = {}
    with embedded_server(config) as base_urls:
        url, model = base_urls["junior"], config.models["junior"].served_model
        server_scaling(url, model, 1)  # warm-up
        for n in RUNNERS:
            tokens_s = server_scaling(url, model, n)
            run = run_through_runner(config, tasks[: TASKS[n]], base_urls, n, workdir)
            ok = sum(r.status == "succeeded" for r in run["records"])
            starts, ends = zip(*run["windows"], strict=True)
            window = max(ends) - min(starts)
            out[n] = {
                "rollouts": float(len(run["windows"])),
                "succeeded": float(ok),
                "window_s": window,
                "per_min": 60 * len(run["windows"]) / window,
                "server_tok_s": tokens_s,
            }
            print(f"  {n} runner(s): {json.dumps(out[n])}", flush=True)
    return out


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    if skip_real():
        return {}
    runs = measure()
    base = runs[1]
    out: dict[str, Any] = {}
    for n, r in runs.items():
        out[f"runners_{n}"] = result(
            r["per_min"],
            "rollouts/min",
            notes=f"{n} runner(s), {r['rollouts']:.0f} rollouts ({r['succeeded']:.0f} succeeded) "
            f"of the local profile on one embedded SmolLM2 server, {r['window_s']:.0f} s from the "
            "first rollout's start to the last one's end",
        )
        if n == 1:
            continue
        speedup = r["per_min"] / base["per_min"]
        ceiling = r["server_tok_s"] / base["server_tok_s"]
        out[f"speedup_{n}"] = result(speedup, "x")
        out[f"server_ceiling_{n}"] = result(
            ceiling,
            "x",
            notes=f"the server's aggregate tokens/s with {n} simultaneous {SERVER_TOKENS}-token "
            f"requests over one ({r['server_tok_s']:.1f} vs {base['server_tok_s']:.1f} tok/s)",
        )
        out[f"efficiency_{n}"] = result(speedup / ceiling, "x")
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
