"""The few-rows float32 linear path gives F.linear's numbers, and leaves other dtypes alone."""

from __future__ import annotations

import pytest
import torch

from chimera_core.serving.skinny_linear import use_skinny_linear


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 16), (2, 16), (4, 1, 16), (3, 2, 16), (8, 16), (12, 16)])
def test_same_numbers_as_f_linear(bias: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 40, bias=bias)
    x = torch.randn(*shape)
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    model = torch.nn.Sequential(layer)
    assert use_skinny_linear(model) == 1
    got = model(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)


def test_bf16_layers_are_left_alone() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8).to(torch.bfloat16), torch.nn.Linear(8, 8))
    assert use_skinny_linear(model) == 1
    assert "forward" not in vars(model[0]) and "forward" in vars(model[1])
