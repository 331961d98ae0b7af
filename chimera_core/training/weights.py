"""Checks of safetensors weights: each file readable, every floating tensor finite (no NaN/Inf).

A checkpoint with NaN embeddings loads and serves without complaint and answers with garbage,
so every directory Chimera registers, prepares, merges or serves is scanned first. The scan
reads a tensor a slice of rows at a time: memory stays near ``CHUNK_ELEMENTS`` whatever the
model (SmolLM2-135M, 540 MB: about 0.25 s).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK_ELEMENTS = 1 << 22  # 16 MiB of float32 per slice
# Float dtypes numpy reads; bf16 and the float8s need torch (imported only for them: the
# bandit's policy, F64, is checked without paying torch's import).
_NUMPY_FLOATS = frozenset({"F16", "F32", "F64"})
_TORCH_FLOATS = frozenset({"BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})


def weights_problems(directory: Path, shown_as: str | None = None) -> list[str]:
    """One line per bad ``*.safetensors`` under ``directory``: ``<file>: <what is wrong>``.

    ``shown_as`` replaces the directory in the lines (for a temporary directory's files).
    """
    problems = []
    for file in sorted(directory.rglob("*.safetensors")):
        if problem := file_problem(file):
            name = f"{shown_as}/{file.relative_to(directory).as_posix()}" if shown_as else file
            problems.append(f"{name}: {problem}")
    return problems


def file_problem(file: Path) -> str | None:
    """What is wrong with one safetensors file (unreadable, or a tensor with NaN/Inf), or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="np") as handle:
            names = handle.keys()  # a safe_open handle is not iterable itself
            dtypes = {name: handle.get_slice(name).get_dtype() for name in names}
            for name, dtype in dtypes.items():
                if dtype in _NUMPY_FLOATS and (bad := _nonfinite(_slices(handle, name))):
                    return f"tensor {name!r} ({dtype}) has {bad} values"
        torch_names = [name for name, dtype in dtypes.items() if dtype in _TORCH_FLOATS]
        return _torch_problem(file, torch_names, dtypes) if torch_names else None
    except Exception as exc:  # the library raises its own type, OSError or ValueError
        return f"not a readable safetensors file ({exc})"


def _torch_problem(file: Path, names: list[str], dtypes: dict[str, str]) -> str | None:
    """The check of the tensors numpy cannot hold, through torch."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        for name in names:
            # float8 has no min/max kernels on CPU; float32 holds every float8 value exactly.
            chunks = (c.float() for c in _slices(handle, name))
            if bad := _nonfinite(chunks):
                return f"tensor {name!r} ({dtypes[name]}) has {bad} values"
    return None


def _slices(handle: Any, name: str) -> Iterator[Any]:
    """A tensor as slices of whole rows, about ``CHUNK_ELEMENTS`` each (a scalar whole)."""
    view = handle.get_slice(name)
    shape = view.get_shape()
    if not shape:
        yield handle.get_tensor(name)
        return
    rows = shape[0]
    step = max(1, CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))
    for start in range(0, rows, step):
        yield view[start : min(start + step, rows)]  # past the end is an error, not a clamp


def _nonfinite(chunks: Iterator[Any]) -> str | None:
    """``'NaN'`` or ``'Inf'`` if any chunk holds such a value, else None.

    min and max propagate NaN and show ±Inf, and cost a fraction of an element-wise
    ``isfinite`` (which allocates a mask the size of the chunk).
    """
    for chunk in chunks:
        if math.prod(chunk.shape) == 0:
            continue
        low, high = float(chunk.min()), float(chunk.max())
        if math.isnan(low) or math.isnan(high):
            return "NaN"
        if math.isinf(low) or math.isinf(high):
            return "Inf"
    return None
