"""Runner scaling: real rollouts/minute with 1 and 4 Agent Lightning runners, one vLLM server.

Every runner count runs the gather path (``rollouts.runner.run_rollouts``: store, LiteLLM proxy,
tracing, judge reward, records and spans stored) on the same first training tasks, against one
vLLM server (CPU build, SmolLM2) that stays up for the whole benchmark. The rate is taken over
the rollouts' own spans (first start to last end), so session start-up is left out. The
prefix-cache hit rate is vLLM's own count over the rollouts' prompt tokens.

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

RUNNERS = (1, 4)
TASKS = {1: 2, 4: 4}  # rollouts per runner count: at least one per runner
SERVER_TOKENS = 64


def measure() -> dict[int, dict[str, float]]:
    """Rollouts/minute, prefix-cache hits and the server's token rate for each runner count."""
    from benchmarks.bench_rollout import run_through_runner
    from benchmarks.bench_server import concurrent_tokens_s
    from chimera_core.artifacts import open_store
    from chimera_core.model_registry import ModelRegistry
    from chimera_core.serving.model_sets import ModelServing

    workdir = Path(tempfile.mkdtemp(prefix="chimera-bench-runners-"))
    config = bench_config({"stages.gather.max_attempts": 1}, workdir)
    tasks = train_tasks(config, max(TASKS.values()))
    out: dict[int, dict[str, float]] = {}
    serving = ModelServing(config, ModelRegistry(open_store(config.artifacts), workdir / "r"))
    try:
        endpoints = serving.endpoints({})
        server = serving.server
        assert server is not None
        concurrent_tokens_s(endpoints["junior"], 1, SERVER_TOKENS)  # warm-up
        for n in RUNNERS:
            tokens_s = concurrent_tokens_s(endpoints["junior"], n, SERVER_TOKENS)
            queried, hit = server.prefix_cache()
            run = run_through_runner(config, tasks[: TASKS[n]], endpoints, n, workdir)
            queried_after, hit_after = server.prefix_cache()
            ok = sum(r.status == "succeeded" for r in run["records"])
            starts, ends = zip(*run["windows"], strict=True)
            window = max(ends) - min(starts)
            out[n] = {
                "rollouts": float(len(run["windows"])),
                "succeeded": float(ok),
                "window_s": window,
                "per_min": 60 * len(run["windows"]) / window,
                "server_tok_s": tokens_s,
                "cache_hit_rate": (hit_after - hit) / max(1.0, queried_after - queried),
                "startup_s": server.startup_seconds or 0.0,
            }
            print(f"  {n} runner(s): {json.dumps(out[n])}", flush=True)
    finally:
        serving.close()
    return out


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    if skip_real():
        return {}
    runs = measure()
    base = runs[1]
    out: dict[str, Any] = {
        "server_start_to_healthy": result(
            base["startup_s"], "s", notes="the vLLM server of this benchmark, launch to /health"
        )
    }
    for n, r in runs.items():
        out[f"runners_{n}"] = result(
            r["per_min"],
            "rollouts/min",
            notes=f"{n} runner(s), {r['rollouts']:.0f} rollouts ({r['succeeded']:.0f} succeeded) "
            f"of the local profile on one vLLM server (CPU build, SmolLM2), {r['window_s']:.0f} s "
            "from the first rollout's start to the last one's end",
        )
        out[f"prefix_cache_hit_rate_{n}"] = result(
            r["cache_hit_rate"],
            "fraction",
            notes="vLLM's prefix-cache hits over the prompt tokens it was asked for during "
            "those rollouts (all roles and the judge)",
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
