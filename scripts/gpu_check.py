"""On a CUDA machine: prove the GPU paths in one go and print a pass/fail table.

Prepares SmolLM2, trains one SFT step (unsloth where it is installed, TRL otherwise) and one
GRPO step on CUDA, serves the base with CUDA vLLM, loads the SFT adapter at runtime and runs
one PubMedQA task through the lab on it. Each check runs even if an earlier one failed (those
that need an earlier result say so). Exit code: the number of failed checks.

Run: ``bash scripts/gpu_check.sh`` (``pip install -e ".[gpu]"`` first; under 10 minutes).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
rows: list[tuple[str, str, float, str]] = []
found: dict[str, Any] = {}


def check(name: str, fn: Callable[[], str]) -> None:
    """Run one check, record pass/fail, its time and what it saw."""
    start = time.perf_counter()
    try:
        detail, status = fn(), "pass"
    except Exception as exc:  # a failed check is a row of the table, never the end of the run
        detail, status = f"{type(exc).__name__}: {str(exc)[:160]}", "FAIL"
        traceback.print_exc()
    rows.append((name, status, time.perf_counter() - start, detail))
    console.print(f"[{'green' if status == 'pass' else 'red'}]{status}[/] {name}: {detail}")


def main() -> int:
    """Run every check; print the table; return the number of failures."""
    import torch

    from chimera_core.config import load_config
    from chimera_core.serving.model_store import prepare_model
    from chimera_plugins.algorithms.grpo_trainer import train_grpo
    from chimera_plugins.algorithms.options import GRPOOptions, SFTOptions
    from chimera_plugins.algorithms.sft_trainer import train_sft

    work = Path(tempfile.mkdtemp(prefix="chimera-gpu-check-"))
    config = load_config(
        "local",
        overrides={
            "serving.models_dir": str(work / "models"),
            "serving.dtype": "auto",
            "serving.gpu_memory_utilization": 0.3,
            "artifacts.local_root": str(work / "artifacts"),
            "tracking.wandb_mode": "disabled",
        },
    )

    def cuda() -> str:
        assert torch.cuda.is_available(), "no CUDA device"
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"

    def prepare() -> str:
        found["base"] = prepare_model(config.serving.models_dir).path
        return str(found["base"])

    def sft() -> str:
        convs = [
            [
                {"role": "user", "content": f"Does drug {i} lower blood pressure?"},
                {"role": "assistant", "content": json.dumps({"hypothesis": f"Drug {i} does"})},
            ]
            for i in range(8)
        ]
        cfg = SFTOptions(lora_r=8, max_steps=1, batch_size=2, grad_accum=1, max_seq_length=256)
        result = train_sft(found["base"], convs, cfg, work / "sft")
        found["adapter"] = work / "sft"
        return f"{result.backend}, loss {result.losses[-1]:.3f}, {result.seconds:.1f} s"

    def grpo() -> str:
        examples = [{"prompt": [{"role": "user", "content": "Answer yes or no: is water wet?"}]}]

        def reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
            return [float("yes" in str(c).lower()) for c in completions]

        cfg = GRPOOptions(total_steps=1, rollout_n=2, train_batch_size=2, max_response_length=16)
        result = train_grpo(found["base"], examples * 2, reward, cfg, work / "grpo")
        return f"{result.steps} step, {result.seconds:.1f} s"

    def serve_and_rollout() -> str:
        from chimera_core.artifacts import open_store
        from chimera_core.data.tasks import ResearchTask
        from chimera_core.lab import ConfigModelProvider, run_task
        from chimera_core.model_registry import ModelRegistry
        from chimera_core.serving.model_sets import ModelServing

        registry = ModelRegistry(open_store(config.artifacts), work / "registry")
        serving = ModelServing(config, registry, run_id="gpu-check")
        try:
            endpoints = serving.endpoints({})
            server = serving.server
            assert server is not None
            server.load_adapter("junior-gpu-check", found["adapter"])
            names = server.models()
            assert "junior-gpu-check" in names, names
            task = ResearchTask(
                id="gpu-check",
                goal="Does regular aerobic exercise lower resting blood pressure?",
                context="A 12-week randomised trial in 120 adults with stage 1 hypertension "
                "found a 6 mmHg larger fall in systolic pressure with supervised exercise.",
                expected_decision="yes",
            )
            state = run_task(task, config, ConfigModelProvider(config, endpoints), max_turns=10)
            return (
                f"vLLM healthy in {server.startup_seconds:.0f} s; models {names}; rollout "
                f"decision {state.get('final_decision')}"
            )
        finally:
            serving.close()

    check("cuda", cuda)
    check("prepare SmolLM2", prepare)
    check("SFT step (unsloth or TRL)", sft)
    check("GRPO step (TRL)", grpo)
    check("vLLM serve + runtime adapter + rollout", serve_and_rollout)
    table = Table(title="Chimera GPU check")
    for column in ("check", "result", "seconds", "detail"):
        table.add_column(column, overflow="fold")
    for name, status, seconds, detail in rows:
        table.add_row(name, status, f"{seconds:.1f}", detail)
    console.print(table)
    return sum(status != "pass" for _, status, _, _ in rows)


if __name__ == "__main__":
    sys.exit(main())
