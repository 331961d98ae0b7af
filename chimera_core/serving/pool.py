"""The models a server holds: served names mapped to loaded checkpoints, swappable while serving.

Names whose checkpoint is the same directory (same files) share one copy of the weights and one
engine, so their requests also batch together. Pointing a name at a new directory loads it
first and then swaps the mapping; requests already running finish on the old copy, which is
released once no name uses it and its queue is empty.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chimera_core.config.models import EmbeddedServerConfig
from chimera_core.errors import ChimeraError
from chimera_core.serving.engine import GenerationEngine, warm_up
from chimera_core.serving.manifest import read_manifest, structure_problems, verify_model_dir
from chimera_core.serving.skinny_linear import use_skinny_linear
from chimera_core.serving.tokens import TokenCodec

log = logging.getLogger("chimera.serving")


@dataclass
class LoadedModel:
    """One checkpoint in memory and the names it is served under."""

    key: str
    path: Path
    engine: GenerationEngine
    codec: TokenCodec
    dtype: str
    num_parameters: int
    load_seconds: float
    loaded_at: float = field(default_factory=time.time)
    names: set[str] = field(default_factory=set)


def checkpoint_key(path: Path, dtype: str) -> str:
    """Identity of a checkpoint's contents: the path plus its files' sizes and mtimes."""
    parts = [str(path), dtype]
    for file in sorted(path.iterdir()):
        if file.is_file():
            stat = file.stat()
            parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16, AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def load_checkpoint(path: Path, settings: EmbeddedServerConfig, label: str) -> LoadedModel:
    """Verify an HF directory, load model and tokenizer, start and warm up its engine.

    bfloat16 on a CPU without native bf16 (AVX2): one row decodes ~1.3-1.6x faster in bf16
    (memory-bound: half the bytes), but prompts run ~5x slower (1024 tokens: 5 s vs 29 s
    measured) and batches of 4+ rows are slower too (compute-bound). The engine then holds a
    float32 copy as well (+4 bytes/parameter) for prompts and wide batches.
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    problems = verify_model_dir(path) if read_manifest(path) else structure_problems(path)
    if problems:
        raise ChimeraError(f"cannot serve {path}: " + "; ".join(problems))
    tokenizer = AutoTokenizer.from_pretrained(path)
    dtype = getattr(torch, settings.dtype)
    split = dtype == torch.bfloat16 and not native_bf16()
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32 if split else dtype
    ).eval()
    prefill_model = None
    if split:
        prefill_model, model = model, copy.deepcopy(model).to(dtype)
    use_skinny_linear(prefill_model or model)  # float32 weights only; bf16 is left as is
    codec = TokenCodec(tokenizer, model.generation_config.eos_token_id)
    if not codec.has_chat_template:
        raise ChimeraError(f"cannot serve {path}: the tokenizer has no chat template")
    engine = GenerationEngine(
        model,
        codec,
        label=label,
        max_batch_size=settings.max_batch_size,
        prefill_model=prefill_model,
    ).start()
    warm_up(engine)
    loaded = LoadedModel(
        key=checkpoint_key(path, settings.dtype),
        path=path,
        engine=engine,
        codec=codec,
        dtype=settings.dtype,
        num_parameters=sum(p.numel() for p in model.parameters()),
        load_seconds=time.perf_counter() - start,
    )
    log.info(
        "model %s: loaded %s (%s%s, %.1fM parameters) in %.1f s",
        label,
        path,
        settings.dtype,
        ", prompts in float32" if prefill_model is not None else "",
        loaded.num_parameters / 1e6,
        loaded.load_seconds,
    )
    return loaded


class ModelPool:
    """Served name -> loaded checkpoint, with atomic replacement."""

    def __init__(self, settings: EmbeddedServerConfig) -> None:
        self.settings = settings
        self._names: dict[str, LoadedModel] = {}
        self._by_key: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()  # one load at a time: memory, and no double loads

    def load(self, name: str, path: Path | str) -> tuple[LoadedModel, Path | None]:
        """Serve ``path`` as ``name`` (blocking); returns the model and the path it replaced."""
        path = Path(path).expanduser().resolve()
        if not path.is_dir():
            raise ChimeraError(f"cannot serve {path}: not a directory")
        with self._load_lock:
            key = checkpoint_key(path, self.settings.dtype)
            loaded = self._by_key.get(key) or load_checkpoint(path, self.settings, name)
            with self._lock:
                self._by_key[key] = loaded
                previous = self._names.get(name)
                self._names[name] = loaded
                loaded.names.add(name)
                if previous is not None and previous is not loaded:
                    self._release(previous, name)
        if previous is not None and previous is not loaded:
            log.info("model %s: now %s (was %s)", name, path, previous.path)
        return loaded, (previous.path if previous else None)

    def unload(self, name: str) -> Path:
        """Stop serving ``name``; returns the path it served."""
        with self._lock:
            loaded = self._names.pop(name, None)
            if loaded is None:
                raise KeyError(name)
            self._release(loaded, name)
        return loaded.path

    def _release(self, loaded: LoadedModel, name: str) -> None:
        """Drop ``name`` from a model; retire the model (drain, then free) if nothing uses it."""
        loaded.names.discard(name)
        if not loaded.names:
            self._by_key.pop(loaded.key, None)
            loaded.engine.close(drain=True)
            log.info("model %s: retiring %s once its running requests finish", name, loaded.path)

    def get(self, name: str) -> LoadedModel | None:
        """The model served as ``name``, if any."""
        with self._lock:
            return self._names.get(name)

    def served(self) -> dict[str, LoadedModel]:
        """A snapshot of name -> model."""
        with self._lock:
            return dict(self._names)

    def close(self) -> None:
        """Stop every engine (running requests are aborted)."""
        with self._lock:
            models = list(self._by_key.values())
            self._names.clear()
            self._by_key.clear()
        for loaded in models:
            loaded.engine.close(drain=False)
        for loaded in models:
            loaded.engine.join(5)
