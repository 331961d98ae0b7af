"""Faster float32 linear layers for a few rows at a time (batched decoding on CPU).

For 2 to 8 input rows, ``F.linear`` (x @ W.T) goes through a GEMM path that is slower than
``W @ x.T`` on CPU: measured on 2 AVX2 cores with SmolLM2's lm_head (49152x576, float32),
19.2 ms vs 5.1 ms at 4 rows, and a whole decode step of 4 rows went from 80 to 63 ms
(``benchmarks/README.md``). One row, or a prompt's many rows, keep ``F.linear``.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch.nn import functional

MIN_ROWS = 2
MAX_ROWS = 8


def _forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    features = x.shape[-1]
    rows = x.numel() // features if features else 0
    if not MIN_ROWS <= rows <= MAX_ROWS or x.dtype != torch.float32:
        return functional.linear(x, self.weight, self.bias)
    y = (self.weight @ x.reshape(rows, features).t()).t()
    if self.bias is not None:
        y = y + self.bias
    return y.reshape(*x.shape[:-1], self.weight.shape[0])


def use_skinny_linear(model: Any) -> int:
    """Give every float32 ``nn.Linear`` of the model the few-rows path; return how many."""
    patched = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.float32:
            module.forward = types.MethodType(_forward, module)  # type: ignore[method-assign]
            patched += 1
    return patched
