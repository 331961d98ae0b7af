"""Supervised fine-tuning with LoRA on conversations: TRL on CPU, unsloth when CUDA allows.

Conversations become prompt/completion pairs (one per assistant turn, the prompt being every
message before it), so the loss covers the assistant's tokens only. The result is a PEFT adapter
directory over the base (what vLLM serves as a LoRA module); a parent adapter is continued.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chimera_core.plugins import ChimeraError
from chimera_plugins.algorithms.hf_progress import RichProgressCallback, quiet_trainer
from chimera_plugins.algorithms.lora import (
    LoraSpec,
    TrainedModel,
    continue_adapter,
    load_for_training,
    save_adapter,
)

if TYPE_CHECKING:
    from chimera_plugins.algorithms.options import SFTOptions

Message = dict[str, str]


class SFTResult(TrainedModel):
    """What one SFT run did."""

    backend: Literal["trl", "unsloth"]
    n_conversations: int
    n_examples: int
    steps: int
    losses: list[float]
    seconds: float
    seconds_per_step: float


def to_prompt_completion(conversations: Sequence[Sequence[Message]]) -> list[dict[str, Any]]:
    """One example per assistant turn: the messages before it, then that turn."""
    examples = []
    for conv in conversations:
        for i, msg in enumerate(conv):
            if msg.get("role") == "assistant" and msg.get("content") and i > 0:
                examples.append(
                    {
                        "prompt": [dict(m) for m in conv[:i]],
                        "completion": [{"role": "assistant", "content": msg["content"]}],
                    }
                )
    return examples


def choose_backend(cfg: SFTOptions) -> Literal["trl", "unsloth"]:
    """unsloth when asked for or (auto) when CUDA and unsloth are both present."""
    if cfg.use_unsloth == "never":
        return "trl"
    import torch

    has = torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None
    if cfg.use_unsloth == "always" and not has:
        raise ChimeraError(
            "stages.sft.options.use_unsloth is 'always' but CUDA or unsloth is missing. unsloth "
            "is not in the gpu extra (no release installs beside our transformers; see "
            "pyproject.toml): install it by hand on a CUDA machine, or set it to 'auto' to train "
            "with TRL"
        )
    return "unsloth" if has else "trl"


def _load_unsloth(
    base_dir: Path, parent_adapter: Path | None, cfg: SFTOptions, lora: LoraSpec
) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel  # GPU path only

    model, tokenizer = FastLanguageModel.from_pretrained(
        str(base_dir), max_seq_length=cfg.max_seq_length, load_in_4bit=True
    )
    if parent_adapter is None:
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, target_modules=list(lora.target_modules)
        )
    else:
        # unsloth's own reload path: a trainable PeftModel, then its kernels patched in.
        model = FastLanguageModel.patch_peft_model(continue_adapter(model, parent_adapter, lora))
    return model, tokenizer


def train_sft(
    base_dir: Path,
    conversations: Sequence[Sequence[Message]],
    cfg: SFTOptions,
    output_dir: Path,
    *,
    parent_adapter: Path | None = None,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
) -> SFTResult:
    """Train a LoRA on the assistant turns and save it as an adapter dir; return what happened.

    With ``parent_adapter`` that adapter is trained further, at its own rank (a different
    ``cfg.lora_r`` is logged, not applied); otherwise a fresh rank-``cfg.lora_r`` adapter.
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (e.g. a step timer).
    """
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    examples = to_prompt_completion(conversations)
    if not examples:
        raise ChimeraError("SFT got no assistant turns to learn from (no successful traces?)")
    backend = choose_backend(cfg)
    lora = LoraSpec(cfg.lora_r, cfg.lora_alpha, tuple(cfg.target_modules))
    if backend == "unsloth":
        model, tokenizer = _load_unsloth(base_dir, parent_adapter, cfg, lora)
    else:
        model, tokenizer = load_for_training(base_dir, parent_adapter, lora)
    import torch

    # TRL trains on CUDA too when unsloth is absent; only a machine without CUDA is a CPU run.
    on_gpu = torch.cuda.is_available()
    progress = RichProgressCallback(f"sft ({backend})")
    work = output_dir.parent / f".{output_dir.name}.trainer"
    args = TRLSFTConfig(
        output_dir=str(work),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        max_length=cfg.max_seq_length,
        completion_only_loss=True,
        # A lab prompt (shared task block, demonstration, inputs) can outgrow max_seq_length;
        # cutting its start keeps the answer being learned, where keep_start would drop the
        # whole example (TRL deprecates keep_end for 2.0; revisit then).
        truncation_mode="keep_end",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=seed,
        # CPU: bf16 raises, and checkpointing doubles compute for no memory need at this size.
        bf16=on_gpu,
        use_cpu=not on_gpu,
        gradient_checkpointing=on_gpu,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        callbacks=list(callbacks) or None,
    )
    quiet_trainer(trainer, progress)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    save_adapter(trainer.model, output_dir)
    result = SFTResult(
        output_dir=str(output_dir),
        backend=backend,
        n_conversations=len(conversations),
        n_examples=len(examples),
        steps=int(trainer.state.global_step),
        losses=progress.series("loss"),
        seconds=round(seconds, 3),
        seconds_per_step=round(seconds / max(1, trainer.state.global_step), 3),
    )
    (output_dir / "chimera_training.json").write_text(json.dumps(result.model_dump(), indent=2))
    return result
