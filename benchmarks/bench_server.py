"""Embedded model server throughput: single stream vs raw ``model.generate``, and 4 clients.

Every number comes from SmolLM2-135M-Instruct on this machine's CPU. Raw generate and the
server run the same chat prompt, greedy, exactly ``--new-tokens`` tokens (EOS suppressed:
``min_new_tokens`` / vLLM's ``min_tokens``), timed end to end (prompt included), alternating
so that background load hits both alike; the median of ``--repeats`` runs is reported.

Also reported: time to first token and the decode rate after it (prompt excluded), and with
``--long-prompt`` a ~700-token prompt end to end (where prompt processing dominates).

Run: ``python -m benchmarks.bench_server [--dtype bfloat16] [--out results/server.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "server.json"
QUESTION = "Explain in detail how vaccines train the immune system, step by step."
LONG_CONTEXT = (
    "Background: randomized trials of statins in older adults report fewer cardiovascular "
    "events, yet observational cohorts describe muscle symptoms and discontinuation. "
) * 30
GOALS = {"server_over_generate": 0.9, "four_clients_over_single": 2.0}


def _messages(prefix: str, question: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{prefix}{question}"}]


def _count(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _raw_generate(model: Any, tokenizer: Any, messages: list[dict[str, str]], n: int) -> float:
    """Tokens/s of plain transformers generate (greedy, exactly ``n`` new tokens)."""
    import torch

    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2
        )
    seconds = time.perf_counter() - start
    assert out.shape[1] - ids["input_ids"].shape[1] == n
    return n / seconds


def _request(base_url: str, messages: list[dict[str, str]], n: int, model: str = "bench") -> int:
    import httpx

    body = {
        "model": model,
        "messages": messages,
        "max_tokens": n,
        "min_tokens": n,
        "temperature": 0,
    }
    response = httpx.post(f"{base_url}/chat/completions", json=body, timeout=600)
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"])


def _server_single(base_url: str, messages: list[dict[str, str]], n: int) -> float:
    start = time.perf_counter()
    got = _request(base_url, messages, n)
    assert got == n
    return n / (time.perf_counter() - start)


def _decode_rates(model: Any, tokenizer: Any, base_url: str, n: int) -> dict[str, float]:
    """Tokens/s after the first token (prompt excluded), raw and server, from a 1-token run."""
    short = _messages("")
    raw_one, raw_n = (
        _raw_generate(model, tokenizer, short, 1),
        _raw_generate(model, tokenizer, short, n),
    )
    srv_one, srv_n = _server_single(base_url, short, 1), _server_single(base_url, short, n)
    return {
        "raw_decode_tok_s": (n - 1) / (n / raw_n - 1 / raw_one),
        "server_decode_tok_s": (n - 1) / (n / srv_n - 1 / srv_one),
        "raw_first_token_s": 1 / raw_one,
        "server_first_token_s": 1 / srv_one,
    }


def _server_concurrent(base_url: str, clients: int, n: int, model: str = "bench") -> float:
    """Aggregate tokens/s of ``clients`` simultaneous requests (distinct prompts)."""
    counts: list[int] = []
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        barrier.wait()
        counts.append(_request(base_url, _messages(f"(client {i}) "), n, model))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [n] * clients
    return sum(counts) / (time.perf_counter() - start)


def measure(
    dtype: str, models_dir: Path, new_tokens: int, repeats: int, clients: int, long_prompt: bool
) -> dict[str, Any]:
    """Run the comparison; returns the measured numbers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chimera_core.config.models import ChimeraConfig, EmbeddedServerConfig
    from chimera_core.serving.lifecycle import start_server
    from chimera_core.serving.model_store import prepare_model

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    path = prepare_model(models_dir).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    config = ChimeraConfig(
        models={},
        roles={},
        serving=EmbeddedServerConfig(models_dir=models_dir, dtype=dtype, max_batch_size=8),
    )
    short = _messages("")
    prompt_tokens = _count(tokenizer, short)
    raw: list[float] = []
    single: list[float] = []
    concurrent: list[float] = []
    result: dict[str, Any] = {}
    with start_server(config, models={"bench": path}) as server:
        _raw_generate(model, tokenizer, short, 4)  # warm-ups
        _server_single(server.base_url, short, 4)
        for _ in range(repeats):
            raw.append(_raw_generate(model, tokenizer, short, new_tokens))
            single.append(_server_single(server.base_url, short, new_tokens))
            concurrent.append(_server_concurrent(server.base_url, clients, new_tokens))
            print(
                f"  raw {raw[-1]:.1f} | server {single[-1]:.1f} | "
                f"{clients} clients {concurrent[-1]:.1f} tok/s",
                flush=True,
            )
        result |= _decode_rates(model, tokenizer, server.base_url, new_tokens)
        if long_prompt:
            context = _messages(LONG_CONTEXT)
            result["long_prompt_tokens"] = _count(tokenizer, context)
            result["long_prompt_raw_tok_s"] = _raw_generate(model, tokenizer, context, 32)
            result["long_prompt_server_tok_s"] = _server_single(server.base_url, context, 32)
    raw_tps, single_tps, concurrent_tps = (statistics.median(v) for v in (raw, single, concurrent))
    result |= {
        "dtype": dtype,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "clients": clients,
        "raw_generate_tok_s": raw_tps,
        "server_single_tok_s": single_tps,
        "server_concurrent_tok_s": concurrent_tps,
        "server_over_generate": single_tps / raw_tps,
        "four_clients_over_single": concurrent_tps / single_tps,
        "runs": {"raw": raw, "server_single": single, "server_concurrent": concurrent},
    }
    return result


def _metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The runner's format: value, unit, goal, met."""
    out: dict[str, Any] = {
        "raw_generate": {"value": result["raw_generate_tok_s"], "unit": "tok/s"},
        "server_single": {"value": result["server_single_tok_s"], "unit": "tok/s"},
        "server_4_clients": {"value": result["server_concurrent_tok_s"], "unit": "tok/s"},
    }
    for key, goal in GOALS.items():
        value = result[key]
        out[key] = {"value": value, "unit": "x", "goal": f">= {goal}", "met": value >= goal}
    return out


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py`` (the config's default dtype, 3 repeats)."""
    from chimera_core.config.models import EmbeddedServerConfig

    defaults = EmbeddedServerConfig()
    result = measure(defaults.dtype, defaults.models_dir, 64, 3, 4, long_prompt=False)
    return _metrics(result)


def main() -> int:
    """Measure, print and write JSON."""
    from chimera_core.config.models import EmbeddedServerConfig

    # Same threading policy in this process (raw generate) as the server gets by default.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    defaults = EmbeddedServerConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=defaults.dtype)
    parser.add_argument("--models-dir", type=Path, default=defaults.models_dir)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--long-prompt", action="store_true", help="also time a ~700-token prompt")
    args = parser.parse_args()
    print(f"bench_server: {args.dtype}, {args.new_tokens} new tokens, {args.repeats} repeats")
    result = measure(
        args.dtype, args.models_dir, args.new_tokens, args.repeats, args.clients, args.long_prompt
    )
    payload = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        },
        **result,
        "metrics": _metrics(result),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    for name, metric in payload["metrics"].items():
        goal = ""
        if "goal" in metric:
            goal = f"  (goal {metric['goal']}: {'met' if metric['met'] else 'NOT met'})"
        print(f"{name:>26}: {metric['value']:8.2f} {metric['unit']}{goal}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
