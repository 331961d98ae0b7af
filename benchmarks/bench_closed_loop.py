"""Closed loop: how far one short cycle moves a planted, learnable reward.

The slow test ``tests/closed_loop`` asserts that it rises (paired CI above zero); this row
records by how much. Same setup: the local profile rewarded only by ``planted_go`` (pays for a
GO decision), the PI sampled while gathering, its alias trained by the board stage's
rejection-sampling SFT, base vs challenger on the same held-out tasks (fixture data, seed
split). ``CHIMERA_BENCH_LOOP_GATHER`` / ``_EVAL`` change the task counts (16 / 8);
``CHIMERA_BENCH_LOOP_ALGORITHM=grpo`` trains the board with GRPO instead (the comparison that
chose rejection sampling).

Run: ``python -m benchmarks.run closed_loop``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, result, skip_real


def _board_summary(algorithm: str, metrics: dict[str, Any]) -> str:
    """What the board's trainer did, in its own terms."""
    if algorithm == "grpo":
        rewards = metrics.get("mean_rewards") or [float("nan")]
        return (
            f"board GRPO: {metrics.get('steps')} steps on {metrics.get('prompts')} PI prompts, "
            f"mean reward of its samples {rewards[0]:.2f} (first step) -> {rewards[-1]:.2f} (last)"
        )
    return f"board SFT kept {metrics.get('kept')} of {metrics.get('examples')} PI conversations"


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    if skip_real():
        return {}
    from chimera_core.artifacts import LocalArtifactStore
    from chimera_core.cli.main import main
    from chimera_core.plugins import get_registry
    from tests.closed_loop.planted_reward import MODULE, closed_loop_profile

    n_gather = int(os.environ.get("CHIMERA_BENCH_LOOP_GATHER", "16"))
    n_eval = int(os.environ.get("CHIMERA_BENCH_LOOP_EVAL", "8"))
    algorithm = os.environ.get("CHIMERA_BENCH_LOOP_ALGORITHM", "sft")
    root = Path(tempfile.mkdtemp(prefix="chimera-bench-loop-"))
    data_file = REPO / "tests" / "fixtures" / "pubmedqa" / "ori_pqal.json"
    profile = closed_loop_profile(
        root, data_file, n_gather=n_gather, n_eval=n_eval, algorithm=algorithm
    )
    os.environ["CHIMERA_PLUGIN_MODULES"] = MODULE
    get_registry.cache_clear()
    run_id = f"bench-loop-{time.strftime('%Y%m%d%H%M%S')}"
    start = time.perf_counter()
    code = main(["pipeline", "run", "--profile", str(profile), "--run-id", run_id,
                 "--stages", "ingest,gather,board,evaluate"])  # fmt: skip
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"the closed-loop pipeline failed (exit {code}); see its output above")
    store = LocalArtifactStore(root / "artifacts")
    evaluation = store.get_json(f"runs/{run_id}/evaluate/result.json")["metrics"]
    board = store.get_json(f"runs/{run_id}/board/result.json")["metrics"]
    (c,) = [c for c in evaluation["comparisons"] if c["metric"] == "mean_reward"]
    notes = (
        f"planted reward (GO rate) base {c['baseline']:.3f} -> challenger {c['challenger']:.3f} "
        f"on {c['n_pairs']} paired held-out tasks, 95% CI [{c['ci_low']:+.3f}, "
        f"{c['ci_high']:+.3f}]; {_board_summary(algorithm, board)}; {n_gather} gathered "
        f"tasks; {wall:.0f} s"
    )
    return {
        "planted_reward_delta": result(
            c["delta"], "", goal="CI low > 0", met=c["ci_low"] > 0, notes=notes
        ),
        "planted_reward_ci_low": result(c["ci_low"], ""),
        "cycle_seconds": result(wall, "s"),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
