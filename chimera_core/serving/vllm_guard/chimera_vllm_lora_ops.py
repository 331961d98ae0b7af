"""A vLLM general plugin: CPU LoRA ops that group tokens by adapter instead of copying weights.

vLLM's PyTorch-native punica ops (``vllm.lora.ops.torch_ops``, what its CPU build runs) index
the stacked adapter weights with one adapter id per token (``weights[indices]``), so every
LoRA'd layer copies a ``[tokens, out, rank]`` tensor before a batched einsum: about 3 GB of
copies per 700-token prefill with rank 16 on SmolLM2's q/k/v/o. Here the tokens of each adapter
(a batch holds a handful) go through one matmul against that adapter's weights, with the same
index semantics (``-1`` included) and the same output handling.

Loaded in every vLLM process through the ``vllm.general_plugins`` entry point of the
``chimera-vllm-plugins`` distribution next to this file (on the server's ``PYTHONPATH``);
``CHIMERA_VLLM_LORA_OPS=vllm`` keeps vLLM's own ops. GPU builds use their Triton kernels and are
untouched. Like the guard, it runs in vLLM's environment: torch and vLLM, imported when loaded.
"""

from __future__ import annotations

import logging
import os
from typing import Any

_installed = False


def grouped_matmul(inputs: Any, weights: Any, indices: Any, dtype: Any) -> Any:
    """``out[t] = weights[indices[t]] @ inputs[t]`` with one matmul per distinct index.

    ``weights`` is ``[n_slots, out, in]`` or ``[n_slots, 1, out, in]``; negative indices count
    from the end, as ``weights[indices]`` would.
    """
    import torch

    if weights.dim() == 4:
        weights = weights.squeeze(dim=1)
    inputs = inputs.to(dtype=dtype)
    out = torch.empty((inputs.shape[0], weights.shape[1]), dtype=dtype, device=inputs.device)
    if inputs.shape[0] == 0:
        return out
    for slot in torch.unique(indices).tolist():
        rows = (indices == slot).nonzero(as_tuple=True)[0]
        out[rows] = inputs[rows] @ weights[slot].to(dtype=dtype).t()
    return out


def _write(target: Any, values: Any, add: bool) -> None:
    """``target += values`` or ``target[:] = values``, in place (``target`` is a view)."""
    if add:
        target += values
    else:
        target.copy_(values)


def bgmv_shrink(
    inputs: Any,
    lora_b_weights: Any,
    output_tensor: Any,
    lora_indices_tensor: Any,
    scaling: float = 1.0,
) -> None:
    """vLLM's ``bgmv_shrink``, grouped."""
    outputs = grouped_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]


def bgmv_expand(
    inputs: Any,
    lora_b_weights: Any,
    output_tensor: Any,
    lora_indices_tensor: Any,
    add_inputs: bool = True,
) -> None:
    """vLLM's ``bgmv_expand``, grouped."""
    outputs = grouped_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    # LoRA adapter and model may add different amounts of padding to output
    common_len = min(outputs.shape[1], output_tensor.shape[1])
    _write(output_tensor[:, :common_len], outputs[:limit, :common_len], add_inputs)


def bgmv_expand_slice(
    inputs: Any,
    lora_b_weights: Any,
    output_tensor: Any,
    lora_indices_tensor: Any,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    """vLLM's ``bgmv_expand_slice``, grouped."""
    outputs = grouped_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    _write(output_tensor[:, slice_offset : slice_offset + slice_size], outputs, add_inputs)


GROUPED = {
    "bgmv_shrink": bgmv_shrink,
    "bgmv_expand": bgmv_expand,
    "bgmv_expand_slice": bgmv_expand_slice,
}


def register() -> None:
    """The entry point: swap the grouped ops into vLLM's torch ops and its CPU punica wrapper.

    vLLM's ``sgmv_*`` ops call ``bgmv_*`` through their module, so they are grouped too.
    """
    global _installed
    if _installed or os.environ.get("CHIMERA_VLLM_LORA_OPS", "grouped") == "vllm":
        return
    import importlib

    targets = []
    for name in (
        "vllm.lora.ops.torch_ops.lora_ops",
        "vllm.lora.ops.torch_ops",
        "vllm.lora.punica_wrapper.punica_cpu",
    ):
        try:
            targets.append(importlib.import_module(name))
        except ImportError:  # another vLLM layout: keep its own ops
            return
    for module in targets:
        for op, grouped in GROUPED.items():
            if hasattr(module, op):
                setattr(module, op, grouped)
    _installed = True
    # A child of vLLM's logger: the line lands in the server log, where a test looks for it.
    logging.getLogger("vllm.chimera_lora_ops").info(
        "chimera: grouped CPU LoRA ops installed (pid %d)", os.getpid()
    )
