"""Built-in training algorithms: sft (juniors), grpo and verl (seniors), bandit (supervisor)."""

from __future__ import annotations

from collections.abc import Callable

from chimera_core.plugins import Algorithm, hookimpl
from chimera_plugins.algorithms.bandit import BanditAlgorithm
from chimera_plugins.algorithms.grpo import GRPOAlgorithm
from chimera_plugins.algorithms.sft import SFTAlgorithm
from chimera_plugins.algorithms.verl import VERLAlgorithm


@hookimpl
def register_algorithms(register: Callable[[Algorithm], None]) -> None:
    """Register the built-in algorithms (their heavy imports happen when they train)."""
    register(SFTAlgorithm())
    register(GRPOAlgorithm())
    register(VERLAlgorithm())
    register(BanditAlgorithm())
