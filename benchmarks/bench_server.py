"""The vLLM server as the lab uses it: start to healthy, one and four clients, the prefix cache.

Every number comes from SmolLM2-135M-Instruct on this machine's CPU, through Chimera's own
server lifecycle (``rollouts.serving.ModelServing``, the local profile's flags). Requests are
greedy with exactly ``NEW_TOKENS`` new tokens (vLLM's ``min_tokens``), timed end to end; the
median of ``REPEATS`` runs is reported. The long prompt (~1,000 tokens) is sent three times with
a different last line: the first is cold, the next two find its prefix cached.

Run: ``python -m benchmarks.run server`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import bench_config, result, skip_real

NEW_TOKENS = 64
REPEATS = 3
CLIENTS = 4
QUESTION = "Explain in detail how vaccines train the immune system, step by step."
LONG_CONTEXT = (
    "Background: randomized trials of statins in older adults report fewer cardiovascular "
    "events, yet observational cohorts describe muscle symptoms and discontinuation. "
) * 40


def request(
    endpoint: Any, content: str, n: int, *, exact: bool = True, timeout_s: float = 600
) -> tuple[int, float]:
    """(completion tokens, seconds) of one greedy chat request to an endpoint."""
    import httpx

    body: dict[str, Any] = {
        "model": endpoint.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": n,
        "temperature": 0,
    }
    if exact:
        body["min_tokens"] = n
    start = time.perf_counter()
    response = httpx.post(
        f"{endpoint.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {endpoint.api_key}"},
        timeout=timeout_s,
    )
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"]), time.perf_counter() - start


def concurrent_tokens_s(endpoint: Any, clients: int, n: int = NEW_TOKENS) -> float:
    """Aggregate tokens/s of ``clients`` simultaneous requests (distinct prompts)."""
    counts: list[int] = []
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        barrier.wait()
        counts.append(request(endpoint, f"(client {i}) {QUESTION}", n)[0])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [n] * clients, counts
    return sum(counts) / (time.perf_counter() - start)


def measure() -> dict[str, float]:
    """Start a server for the local profile's base set and measure it."""
    from chimera_core.artifacts import open_store
    from chimera_core.model_registry import ModelRegistry
    from chimera_core.serving.model_sets import ModelServing

    workdir = Path(tempfile.mkdtemp(prefix="chimera-bench-server-"))
    config = bench_config({}, workdir)
    registry = ModelRegistry(open_store(config.artifacts), workdir / "registry")
    serving = ModelServing(config, registry, run_id="bench")
    try:
        start = time.perf_counter()
        endpoint = serving.endpoints({})["junior"]
        healthy_s = time.perf_counter() - start
        server = serving.server
        assert server is not None
        request(endpoint, QUESTION, 4)  # warm-up
        single, four = [], []
        for _ in range(REPEATS):
            got, seconds = request(endpoint, QUESTION, NEW_TOKENS)
            single.append(got / seconds)
            four.append(concurrent_tokens_s(endpoint, CLIENTS))
            print(f"  1 client {single[-1]:.1f} | {CLIENTS} clients {four[-1]:.1f} tok/s")
        long = [
            request(endpoint, f"{LONG_CONTEXT}\nQuestion {k}: summarise.", 16)[1] for k in range(3)
        ]
        queried, hit = server.prefix_cache()
    finally:
        serving.close()
    return {
        "healthy_s": healthy_s,
        "single": statistics.median(single),
        "four": statistics.median(four),
        "long_cold_s": long[0],
        "long_cached_s": statistics.median(long[1:]),
        "cache_hit_rate": hit / queried if queried else 0.0,
    }


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    if skip_real():
        return {}
    m = measure()
    print(f"  {json.dumps(m)}", flush=True)
    return {
        "start_to_healthy": result(
            m["healthy_s"],
            "s",
            notes="ModelServing.endpoints() on the local profile: launch vLLM (CPU build, "
            "SmolLM2 bf16) and wait for /health",
        ),
        "server_single": result(
            m["single"], "tok/s", notes=f"one client, {NEW_TOKENS} new tokens, median of {REPEATS}"
        ),
        f"server_{CLIENTS}_clients": result(m["four"], "tok/s", notes="aggregate"),
        f"{CLIENTS}_clients_over_single": result(m["four"] / m["single"], "x"),
        "long_prompt_cold": result(m["long_cold_s"], "s", notes="~1,000-token prompt + 16 new"),
        "long_prompt_cached": result(
            m["long_cached_s"], "s", notes="the same prompt, another last line: prefix cached"
        ),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
