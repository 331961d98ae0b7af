"""A rollout's retry loop: faults are retried with doubling backoff, user errors are not."""

from __future__ import annotations

import pytest

from chimera_core.errors import ConfigError
from chimera_core.rollouts.agent import with_retries


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _run(fn: Flaky, max_attempts: int = 3) -> tuple[object, str | None, int, list, list]:
    faults: list[tuple[int, str]] = []
    waits: list[float] = []
    result, error, attempts = with_retries(
        fn,
        max_attempts=max_attempts,
        backoff_s=0.5,
        on_fault=lambda n, err: faults.append((n, err)),
        sleep=waits.append,
    )
    return result, error, attempts, faults, waits


def test_faults_are_retried_with_doubling_backoff_until_one_succeeds() -> None:
    fn = Flaky(ConnectionError("refused"), TimeoutError("slow"))
    result, error, attempts, faults, waits = _run(fn)
    assert (result, error, attempts, fn.calls) == ("ok", None, 3, 3)
    assert faults == [(1, "ConnectionError: refused"), (2, "TimeoutError: slow")]
    assert waits == [0.5, 1.0]


def test_the_last_fault_is_returned_after_max_attempts() -> None:
    fn = Flaky(*(ConnectionError(f"down {i}") for i in range(5)))
    result, error, attempts, faults, waits = _run(fn, max_attempts=2)
    assert (result, error, attempts, fn.calls) == (None, "ConnectionError: down 1", 2, 2)
    assert [n for n, _ in faults] == [1, 2] and waits == [0.5]


def test_a_user_error_is_not_retried() -> None:
    fn = Flaky(ConnectionError("down"), ConfigError(["models.x: unknown"]))
    result, error, attempts, faults, waits = _run(fn)
    assert result is None and attempts == 2 and fn.calls == 2
    assert error is not None and error.startswith("ConfigError: invalid configuration")
    assert faults == [(1, "ConnectionError: down")] and waits == [0.5]


def test_one_attempt_means_no_retry() -> None:
    fn = Flaky(ConnectionError("down"))
    result, error, attempts, faults, waits = _run(fn, max_attempts=1)
    assert (result, error, attempts, waits) == (None, "ConnectionError: down", 1, [])
    assert faults == [(1, "ConnectionError: down")]


def test_an_interrupt_is_not_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt):
        _run(Flaky(KeyboardInterrupt()))
