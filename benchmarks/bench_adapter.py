"""Trace adapter throughput: spans/second from recorded traces to SFT, RL and bandit data.

The dataset is the recorded real rollout (``tests/fixtures/recorded_rollout.json.gz``: a
gather rollout of SmolLM2, 148 spans) replicated ``COPIES`` times, each copy with fresh span,
trace, rollout and attempt ids and its own task id, so nothing can be shared between copies.

Measured two ways, each the median of ``REPEATS`` passes:
  - ``HierarchicalTraceAdapter.adapt`` on the traces in memory (JSON dicts -> SFT conversations
    of the juniors, triplets with token ids of the seniors, the supervisor's bandit sample);
  - ``stages.training_stage.adapt_rollouts``, what the training stages call: records and spans
    read from a local artifact store, then adapted.

Run: ``python -m benchmarks.run adapter``.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, bench_config, median, result

FIXTURE = REPO / "tests" / "fixtures" / "recorded_rollout.json.gz"
COPIES = 100
REPEATS = 3
ID_KEYS = ("span_id", "parent_id", "trace_id", "rollout_id", "attempt_id")


def _ids(value: Any, found: set[str]) -> None:
    """Every value of an id key anywhere in the spans (span, context, parent, resource)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and (
                key in ID_KEYS or key.endswith((".rollout_id", ".attempt_id"))
            ):
                found.add(item)
            else:
                _ids(item, found)
    elif isinstance(value, list):
        for item in value:
            _ids(item, found)


def replicate(payload: dict[str, Any], copies: int) -> list[dict[str, Any]]:
    """``copies`` versions of a recorded rollout, every id and the task id made fresh."""
    found: set[str] = set()
    _ids(payload["spans"], found)
    found.add(payload["record"]["rollout_id"])
    ids = sorted(i for i in found if len(i) >= 8)
    pattern = re.compile("|".join(re.escape(i) for i in ids))
    text = json.dumps(payload)
    out = []
    for n in range(copies):
        fresh = {i: _fresh(i) for i in ids}
        copy = json.loads(pattern.sub(lambda m, f=fresh: f[m.group(0)], text))
        copy["record"]["task_id"] = f"{payload['record']['task_id']}-{n}"
        out.append(copy)
    return out


def _fresh(old: str) -> str:
    """A random id shaped like ``old`` (same prefix such as ``ro-``, same hex length)."""
    prefix, _, tail = old.rpartition("-")
    new = secrets.token_hex((len(tail) + 1) // 2)[: len(tail)]
    return f"{prefix}-{new}" if prefix else new


def load_dataset(copies: int = COPIES) -> list[dict[str, Any]]:
    """The replicated recorded rollouts (record + spans JSON each)."""
    with gzip.open(FIXTURE, "rt") as fh:
        payload = json.load(fh)
    return replicate(payload, copies)


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    from chimera_core.artifacts import LocalArtifactStore
    from chimera_core.data.rollouts import RolloutRecord
    from chimera_core.plugins import get_registry
    from chimera_core.rollouts.storage import record_key, spans_key
    from chimera_core.stages.base import StageContext
    from chimera_core.stages.training_stage import adapt_rollouts
    from chimera_plugins.adapters.hierarchical import HierarchicalTraceAdapter, TracedRollout

    dataset = load_dataset()
    n_spans = sum(len(d["spans"]) for d in dataset)
    config = bench_config()
    traced = [TracedRollout(RolloutRecord.model_validate(d["record"]), d["spans"]) for d in dataset]
    adapter = HierarchicalTraceAdapter()
    adapter.adapt(traced[:1], config)  # warm-up: imports Agent Lightning
    in_memory: list[float] = []
    from_store: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalArtifactStore(Path(tmp))
        prefix = "runs/bench/gather/rollouts"
        for d in dataset:
            task_id = d["record"]["task_id"]
            store.put_json(record_key(prefix, task_id), d["record"])
            store.put_bytes(spans_key(prefix, task_id), json.dumps(d["spans"]).encode())
        ctx = StageContext(config, "bench", "sft", store, get_registry())
        for _ in range(REPEATS):
            start = time.perf_counter()
            data = adapter.adapt(traced, config)
            in_memory.append(n_spans / (time.perf_counter() - start))
            start = time.perf_counter()
            stored = adapt_rollouts(ctx, prefix)
            from_store.append(n_spans / (time.perf_counter() - start))
            print(f"  in memory {in_memory[-1]:.0f} | from store {from_store[-1]:.0f} spans/s")
    counts = data.counts()
    assert stored.counts() == counts and counts["rollouts"] == len(dataset), counts
    per_rollout = {k: v / len(dataset) for k, v in counts.items() if k != "rollouts"}
    return {
        "spans_per_s": result(
            median(in_memory),
            "spans/s",
            notes=f"HierarchicalTraceAdapter.adapt over {len(dataset)} copies of the recorded "
            f"SmolLM2 rollout ({n_spans} spans, fresh ids); per rollout: "
            f"{per_rollout['sft_conversations']:.0f} SFT conversations, "
            f"{per_rollout['rl_triplets']:.0f} triplets, {per_rollout['bandit_samples']:.0f} "
            f"bandit sample; median of {REPEATS}",
        ),
        "spans_per_s_from_store": result(
            median(from_store),
            "spans/s",
            notes="stages.training_stage.adapt_rollouts: the same rollouts read from a local "
            "artifact store (records + spans JSON), then adapted",
        ),
        "ms_per_rollout": result(1000 * n_spans / median(in_memory) / len(dataset), "ms"),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
