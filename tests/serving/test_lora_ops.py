"""Chimera's grouped CPU LoRA ops equal vLLM's per-token ones (the oracle below is theirs)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from chimera_core.serving.vllm_server import GUARD_DIR

torch = pytest.importorskip("torch")
sys.path.insert(0, str(GUARD_DIR))
import chimera_vllm_lora_ops as ops  # noqa: E402


def _per_token(inputs: Any, weights: Any, indices: Any) -> Any:
    """vLLM's torch_ops: copy each token's adapter weights, then one batched einsum."""
    selected = weights[indices]
    if selected.dim() == 4:
        selected = selected.squeeze(dim=1)
    return torch.einsum("bi, boi -> bo", inputs, selected)


@pytest.fixture
def batch() -> dict[str, Any]:
    torch.manual_seed(0)
    # Two adapters and base-model tokens (-1: vLLM's "no adapter" slot), interleaved.
    indices = torch.tensor([0, 0, 2, -1, 2, 0, -1, -1, 1])
    return {
        "x": torch.randn(9, 32),
        "a": torch.randn(4, 1, 8, 32),
        "b": torch.randn(4, 1, 48, 8),
        "indices": indices,
    }


def test_shrink_is_the_per_token_product_scaled(batch: dict[str, Any]) -> None:
    out = torch.zeros(9, 8)
    ops.bgmv_shrink(batch["x"], batch["a"], out, batch["indices"], 0.5)
    expected = 0.5 * _per_token(batch["x"], batch["a"], batch["indices"])
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_adds_or_writes_the_per_token_product(
    batch: dict[str, Any], add_inputs: bool
) -> None:
    shrunk = torch.randn(9, 8)
    start = torch.randn(9, 48)
    out = start.clone()
    ops.bgmv_expand(shrunk, batch["b"], out, batch["indices"], add_inputs)
    product = _per_token(shrunk, batch["b"], batch["indices"])
    torch.testing.assert_close(out, start + product if add_inputs else product)


def test_expand_slice_touches_only_its_slice(batch: dict[str, Any]) -> None:
    shrunk = torch.randn(9, 8)
    start = torch.randn(9, 100)
    out = start.clone()
    ops.bgmv_expand_slice(shrunk, batch["b"], out, batch["indices"], 20, 48, True)
    expected = start.clone()
    expected[:, 20:68] += _per_token(shrunk, batch["b"], batch["indices"])
    torch.testing.assert_close(out, expected)


def test_an_empty_batch_is_empty(batch: dict[str, Any]) -> None:
    out = ops.grouped_matmul(
        torch.zeros(0, 32), batch["a"], torch.zeros(0, dtype=torch.long), torch.float32
    )
    assert out.shape == (0, 8)
