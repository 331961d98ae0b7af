"""Framework overhead per rollout: what the lab costs beyond the model calls themselves.

(a) A real rollout (local profile, SmolLM2 on vLLM's CPU build, offline tools) through
``lab.run_task``: wall time over the time during which at least one model call is in flight,
measured on the client side by a LangChain callback (the three juniors call in parallel, so
overlapping calls count once). Goal <= 1.10.

(b) Rollouts per second with a model that answers instantly, i.e. the cost of orchestration,
tools, tracing and storage alone, three ways:
  - ``lab.run_task`` with in-process scripted chat models (LangGraph + tools + parsing);
  - ``lab.run_task`` with ChatOpenAI against a local fake OpenAI server (adds the HTTP client);
  - ``rollouts.runner.run_rollouts``, the gather/evaluate path: Agent Lightning store, LiteLLM
    proxy, AgentOps tracing, one runner, reward plugins, records and spans written to the
    artifact store, all against the same fake server. Its rate is taken over the rollouts' own
    spans (first start to last end), so the session's one-time start-up (spawn, imports, proxy
    start) is left out and reported separately.

Run: ``python -m benchmarks.run rollout`` (``CHIMERA_BENCH_SKIP_REAL=1`` leaves out (a)).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from benchmarks.common import (
    at_most,
    bench_config,
    median,
    result,
    skip_real,
    train_tasks,
    union_seconds,
)

N_DIRECT = 30  # rollouts per timed round of the in-process paths
ROUNDS = 3  # rounds, interleaved between the two direct paths
N_RUNNER = 30  # rollouts through the Agent Lightning runner
REAL_GOAL = 1.10


class ModelCallTimer(BaseCallbackHandler):
    """Records the (start, end) of every chat model call, from the client's side."""

    def __init__(self) -> None:
        self.open: dict[UUID, float] = {}
        self.calls: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **_: Any
    ) -> None:
        with self.lock:
            self.open[run_id] = time.perf_counter()

    def _end(self, run_id: UUID) -> None:
        now = time.perf_counter()
        with self.lock:
            if (start := self.open.pop(run_id, None)) is not None:
                self.calls.append((start, now))

    def on_llm_end(self, response: Any, *, run_id: UUID, **_: Any) -> None:
        self._end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **_: Any) -> None:
        self._end(run_id)


def fake_models(url: str) -> dict[str, Any]:
    """Config overrides pointing every model alias of the local profile at ``url``."""
    out: dict[str, Any] = {}
    for alias in ("junior", "senior", "board", "judge"):
        out[f"models.{alias}.backend"] = "openai"
        out[f"models.{alias}.base_url"] = url
    return out


def fake_endpoints(config: Any, url: str) -> dict[str, Any]:
    """Every alias's endpoint at ``url`` under its served name (no key)."""
    from chimera_core.lab.models import Endpoint

    return {a: Endpoint(url, m.served_model, "EMPTY") for a, m in config.models.items()}


def _direct_rate(config: Any, tasks: list[Any], provider_of: Any, graph: Any) -> float:
    from chimera_core.lab.run import run_task

    start = time.perf_counter()
    for task in tasks:
        state = run_task(task, config, provider_of(), graph=graph)
        assert state.get("final_decision"), "the scripted rollout did not reach the PI"
    return len(tasks) / (time.perf_counter() - start)


def measure_direct(url: str) -> dict[str, float]:
    """Rollouts/s of run_task: in-process scripted models, and ChatOpenAI against the fake."""
    from chimera_core.lab.graph import build_graph
    from chimera_core.lab.models import ConfigModelProvider
    from tests.lab.scripted import ScriptedProvider

    config = bench_config(fake_models(url))
    tasks = train_tasks(config, N_DIRECT)
    graph = build_graph(config)
    scripted = lambda: ScriptedProvider()  # noqa: E731
    http = lambda: ConfigModelProvider(config)  # noqa: E731
    _direct_rate(config, tasks[:2], scripted, graph)  # warm-up: imports, tool index
    _direct_rate(config, tasks[:2], http, graph)
    rates: dict[str, list[float]] = {"scripted": [], "http": []}
    for _ in range(ROUNDS):
        rates["scripted"].append(_direct_rate(config, tasks, scripted, graph))
        rates["http"].append(_direct_rate(config, tasks, http, graph))
    return {k: median(v) for k, v in rates.items()}


def rollout_windows(store: Any, prefix: str, task_ids: list[str]) -> list[tuple[float, float]]:
    """Each rollout's (start, end) from its saved spans (the runner's session span)."""
    from chimera_core.rollouts.storage import load_spans

    windows = []
    for task_id in task_ids:
        spans = load_spans(store, prefix, task_id)
        if not spans:
            continue
        session = [s for s in spans if str(s.get("name", "")).endswith(".session")]
        chosen = session or spans
        windows.append((min(s["start_time"] for s in chosen), max(s["end_time"] for s in chosen)))
    return windows


def llm_call_windows(spans: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) of each client-side LLM call span (``openai.chat.completion``)."""
    return [
        (s["start_time"], s["end_time"]) for s in spans if s.get("name") == "openai.chat.completion"
    ]


def run_through_runner(
    config: Any, tasks: list[Any], endpoints: dict[str, Any], n_runners: int, workdir: Path
) -> dict[str, Any]:
    """Run tasks with ``run_rollouts``; return records, per-rollout windows and the wall time."""
    from chimera_core.artifacts import LocalArtifactStore
    from chimera_core.rollouts.runner import run_rollouts
    from chimera_core.tracking import Tracker

    store = LocalArtifactStore(Path(config.artifacts.local_root))
    prefix = f"runs/bench/runners-{n_runners}/rollouts"
    start = time.perf_counter()
    with Tracker(config.tracking, "bench", f"bench-{n_runners}", None) as tracker:
        records = run_rollouts(
            config,
            tasks,
            store=store,
            run_id="bench",
            stage="bench",
            prefix=prefix,
            endpoints=endpoints,
            explore=False,
            tracker=tracker,
            n_runners=n_runners,
        )
    wall = time.perf_counter() - start
    ids = [t.id for t in tasks]
    windows = rollout_windows(store, prefix, ids)
    return {
        "records": records,
        "windows": windows,
        "wall_s": wall,
        "spans": {t: _spans(store, prefix, t) for t in ids},
        "workdir": str(workdir),
    }


def _spans(store: Any, prefix: str, task_id: str) -> list[dict[str, Any]]:
    from chimera_core.rollouts.storage import load_spans

    return load_spans(store, prefix, task_id)


def measure_runner(url: str) -> dict[str, float]:
    """Rollouts/s through run_rollouts (1 runner) against the fake; and its start-up time."""
    workdir = Path(tempfile.mkdtemp(prefix="chimera-bench-runner-"))
    config = bench_config(
        {**fake_models(url), "stages.gather.n_runners": 1, "stages.gather.max_attempts": 1},
        workdir,
    )
    tasks = train_tasks(config, N_RUNNER)
    out = run_through_runner(config, tasks, fake_endpoints(config, url), 1, workdir)
    ok = [r for r in out["records"] if r.status == "succeeded"]
    if len(ok) != len(tasks):
        errors = {r.error for r in out["records"] if r.error}
        raise RuntimeError(f"{len(tasks) - len(ok)} runner rollouts failed: {errors}")
    starts, ends = zip(*out["windows"], strict=True)
    window = max(ends) - min(starts)
    return {
        "rate": len(out["windows"]) / window,
        "startup_s": out["wall_s"] - window,
        "calls_per_rollout": _calls(out["spans"]),
    }


def _calls(spans_by_task: dict[str, list[dict[str, Any]]]) -> float:
    counts = [len(llm_call_windows(s)) for s in spans_by_task.values()]
    return sum(counts) / max(1, len(counts))


def measure_real() -> dict[str, float]:
    """One real rollout (local profile, SmolLM2 on vLLM's CPU build) through run_task."""
    from chimera_core.artifacts import open_store
    from chimera_core.lab.models import ConfigModelProvider
    from chimera_core.lab.run import run_task
    from chimera_core.model_registry import ModelRegistry
    from chimera_core.serving.model_sets import serve_model_set

    config = bench_config()
    (task,) = train_tasks(config, 1)
    timer = ModelCallTimer()
    registry = ModelRegistry(open_store(config.artifacts), config.serving.models_dir / "bench")
    with serve_model_set(config, {}, registry) as endpoints:
        provider = ConfigModelProvider(config, endpoints)
        start = time.perf_counter()
        state = run_task(task, config, provider, callbacks=[timer])
        end = time.perf_counter()
    model = union_seconds(timer.calls)
    return {
        "wall_s": end - start,
        "model_s": model,
        "model_sum_s": sum(e - s for s, e in timer.calls),
        "calls": len(timer.calls),
        "decision": 1.0 if state.get("final_decision") else 0.0,
    }


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    from tests.lab.fake_openai import fake_openai_server

    out: dict[str, Any] = {}
    with fake_openai_server() as fake:
        direct = measure_direct(fake.url)
        print(f"  direct: {direct}", flush=True)
        runner = measure_runner(fake.url)
        print(f"  runner: {runner}", flush=True)
    out["instant_run_task_scripted"] = result(
        direct["scripted"],
        "rollouts/s",
        notes="lab.run_task, in-process scripted chat models (tests/lab/scripted.py), offline "
        f"tools; median of {ROUNDS} rounds of {N_DIRECT} rollouts",
    )
    out["instant_run_task_http"] = result(
        direct["http"],
        "rollouts/s",
        notes="lab.run_task, ChatOpenAI against an instant local fake OpenAI server "
        "(tests/lab/fake_openai.py)",
    )
    out["instant_runner"] = result(
        runner["rate"],
        "rollouts/s",
        notes="rollouts.runner.run_rollouts (Agent Lightning store + LiteLLM proxy + AgentOps "
        f"tracing, 1 runner, judge reward, records and spans stored), {N_RUNNER} rollouts of "
        f"{runner['calls_per_rollout']:.0f} LLM calls against the instant fake; rate over the "
        "rollouts' spans",
    )
    out["runner_cost_per_rollout"] = result(
        1000 * (1 / runner["rate"] - 1 / direct["http"]),
        "ms",
        notes="extra time per rollout on the runner path over run_task with the same HTTP model",
    )
    out["runner_session_startup"] = result(
        runner["startup_s"],
        "s",
        notes="once per run_rollouts call: spawn the session, import, start the store server "
        "and the LiteLLM proxy, fork runners; stop them",
    )
    if skip_real():
        return out
    real = measure_real()
    print(f"  real: {real}", flush=True)
    ratio = real["wall_s"] / real["model_s"]
    out["real_rollout_over_model_time"] = at_most(
        ratio,
        REAL_GOAL,
        notes=f"one local-profile rollout with SmolLM2 on vLLM (CPU build): "
        f"{real['wall_s']:.0f} s wall, {real['model_s']:.0f} s with a model call in flight "
        f"({real['calls']:.0f} calls, client-side callback, overlaps counted once)",
    )
    out["real_rollout_wall"] = result(real["wall_s"], "s")
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
