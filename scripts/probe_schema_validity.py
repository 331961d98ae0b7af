"""Per-role schema-valid and truncated rates of the base models over N PubMedQA tasks.

Runs the lab on the local profile's real vLLM server (the test models under
.chimera/test-models, prepared by the slow tests), tools offline, and prints one line per task
and one per role:

    .venv/bin/python scripts/probe_schema_validity.py 8 [path/to/ori_pqal.json]
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_MODELS = REPO / ".chimera" / "test-models"


def main(n_tasks: int, data_file: str) -> None:
    """Run the tasks, print what failed per task and the rates per role."""
    sys.path.insert(0, str(REPO))
    from chimera_core.artifacts import open_store
    from chimera_core.config import load_config
    from chimera_core.data.pubmedqa import load_tasks
    from chimera_core.lab import ConfigModelProvider, run_task
    from chimera_core.model_registry import ModelRegistry
    from chimera_core.serving.model_sets import ModelServing

    overrides = {
        "serving.models_dir": str(TEST_MODELS),
        "artifacts.local_root": str(REPO / ".chimera" / "probe-artifacts"),
        "tracking.wandb_mode": "disabled",
        "tools.online": False,
        "data.source": "file",
        "data.file": data_file,
    }
    config = load_config("local", environ={}, overrides=overrides)
    registry = ModelRegistry(open_store(config.artifacts), TEST_MODELS / "registry")
    serving = ModelServing(config, registry, run_id="probe")
    serving.start()
    valid: dict[str, list[bool]] = collections.defaultdict(list)
    cut: dict[str, list[bool]] = collections.defaultdict(list)
    try:
        endpoints = serving.endpoints({alias: "base" for alias in config.models})
        for task in load_tasks(config.data)[:n_tasks]:
            start = time.perf_counter()
            state = run_task(task, config, ConfigModelProvider(config, endpoints))
            for role, ok in (state.get("schema_valid") or {}).items():
                valid[role].append(ok)
            for role, truncated in (state.get("truncated") or {}).items():
                cut[role].append(truncated)
            failed = [
                (e["role"], e["kind"], e["message"][:80])
                for e in state.get("errors", [])
                if e.get("kind") in ("parse", "truncated")
            ]
            seconds = time.perf_counter() - start
            decision = state.get("final_decision")
            print(f"task {task.id}: {seconds:.0f}s decision={decision} failed={failed}", flush=True)
    finally:
        serving.close()
    for role in sorted(valid):
        ok, total = sum(valid[role]), len(valid[role])
        print(f"{role}: valid {ok}/{total}, truncated {sum(cut[role])}/{len(cut[role])}")


if __name__ == "__main__":
    default_file = REPO.parent / "shared" / "data" / "pubmedqa" / "ori_pqal.json"
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else str(default_file))
