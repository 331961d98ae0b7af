"""A planted, learnable reward for the closed-loop test: it pays for a GO decision.

The base PI answers NO-GO nearly always when greedy and GO sometimes when sampled (1 in 6 at
temperature 1.0 in a nightly gather; this profile samples it at 1.5), so a working
loop (reward -> traces -> trainer -> registry -> served adapter -> evaluation) raises it.
Loaded through CHIMERA_PLUGIN_MODULES, as a plugin author would load one under development.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from chimera_core.plugins import Reward, RewardInput, RewardScore, hookimpl

ROOT = Path(__file__).resolve().parents[2]
TEST_MODELS = ROOT / ".chimera" / "test-models"  # the slow tests' prepared models
PLANTED = "planted_go"
PI = "PrincipalInvestigator"
MODULE = __name__  # what CHIMERA_PLUGIN_MODULES names


class PlantedGo:
    """1.0 for a GO decision, 0.0 otherwise."""

    name = PLANTED

    def score(self, inp: RewardInput) -> RewardScore:
        """Pay for the property, whatever the label says."""
        return RewardScore(value=float(inp.state.get("final_decision") == "GO"))


@hookimpl
def register_rewards(register: Callable[[Reward], None]) -> None:
    register(PlantedGo())


# The board's two algorithms, sized alike (12 optimizer steps on the PI's harvested prompts):
# rejection-sampling SFT on the gathered answers that earned the reward, or GRPO drawing fresh
# answers and scoring them with the same reward.
BOARD: dict[str, dict[str, Any]] = {
    "sft": {
        "reward_threshold": 1.0,
        "lora_r": 8,
        "lora_alpha": 16,
        "learning_rate": 3.0e-4,
        "max_steps": 12,
        "batch_size": 2,
        "grad_accum": 1,
        "max_seq_length": 1024,
    },
    "grpo": {
        "role_rewards": {PI: PLANTED},
        "lora_r": 8,
        "learning_rate": 1.0e-4,
        "total_steps": 12,
        "rollout_n": 4,
        "train_batch_size": 4,
        "max_prompt_length": 1024,
        "max_response_length": 96,
    },
}


def closed_loop_profile(
    root: Path, data_file: Path, n_gather: int, n_eval: int, algorithm: str = "sft"
) -> Path:
    """The local profile, rewarded by the planted reward alone, training the PI only."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    data["profile"] = "closed-loop"
    data["data"] = {"source": "file", "file": str(data_file), "split": "seed"}
    data["artifacts"] = {"backend": "local", "local_root": str(root / "artifacts")}
    data["serving"]["models_dir"] = str(TEST_MODELS)
    data["tracking"] = {"wandb_mode": "disabled", "wandb_dir": str(root / "wandb")}
    data["tools"] = {"online": False}
    for role in data["roles"].values():  # tools are no link of this loop; without them it is faster
        role["tools"] = []
    # No judge in the reward: the planted property is the whole signal, and rollouts are faster.
    data["rewards"] = {"weights": {PLANTED: 1.0}, "decision_reward": PLANTED}
    data["stages"]["gather"].update(
        n_tasks=n_gather, n_runners=2, role_temperatures={PI: 1.5}, max_attempts=2
    )
    data["stages"]["board"] = {"algorithm": algorithm, "options": {algorithm: BOARD[algorithm]}}
    data["stages"]["evaluate"] = {
        "n_tasks": n_eval,
        "split": "validation",
        "primary_metric": "mean_reward",
    }
    path = root / "closed-loop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
