"""Create-if-absent in both stores, and the store lock built on it (holder, stale, wait)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from chimera_core.artifacts import ArtifactStore
from chimera_core.artifacts.lock import Holder, LockHeld, StoreLock

KEY = "runs/r1/gather/lock.json"


@pytest.fixture
def lock_warnings() -> Iterator[list[str]]:
    """Warnings of the lock module (chimera's logger does not propagate to caplog)."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                seen.append(record.getMessage())

    logger = logging.getLogger("chimera.artifacts.lock")
    handler = Collect()
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


def test_create_exclusive_creates_once_and_keeps_the_first(store: ArtifactStore) -> None:
    assert store.create_exclusive("a/lock.json", b"first") is True
    assert store.create_exclusive("a/lock.json", b"second") is False
    assert store.get_bytes("a/lock.json") == b"first"
    assert list(store.list("a")) == ["a/lock.json"]  # no temp file left behind
    store.delete("a/lock.json")
    assert store.create_exclusive("a/lock.json", b"third") is True


def test_create_exclusive_racing_writers_one_wins(store: ArtifactStore) -> None:
    barrier = threading.Barrier(6)
    wins: list[int] = []

    def racer(i: int) -> None:
        barrier.wait()
        if store.create_exclusive("race/lock.json", f"writer {i}".encode()):
            wins.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get_bytes("race/lock.json") == f"writer {wins[0]}".encode()


def test_a_held_lock_names_its_holder_and_is_left_alone(store: ArtifactStore) -> None:
    holder = StoreLock(store, KEY, "run 'r1' stage 'gather'")
    holder.acquire()
    before = store.get_bytes(KEY)
    other = StoreLock(store, KEY, "run 'r1' stage 'gather'", hint="; use --wait")
    with pytest.raises(LockHeld) as err:
        other.acquire()
    message = str(err.value)
    held = json.loads(before)
    assert "run 'r1' stage 'gather' is locked by" in message
    assert f"pid {held['pid']} on host {held['host']} since {held['since']}" in message
    assert store.uri(KEY) in message and message.endswith("; use --wait")
    assert err.value.exit_code == 2
    other.release()  # never acquired: must not remove the holder's lock
    assert store.get_bytes(KEY) == before
    holder.release()
    assert not store.exists(KEY)


def test_a_dead_holder_on_this_host_is_taken_over_with_a_warning(
    store: ArtifactStore, lock_warnings: list[str]
) -> None:
    dead = Holder(999_999, socket.gethostname(), "2020-01-01T00:00:00+00:00", "dead")
    store.put_bytes(KEY, dead.to_bytes())
    lock = StoreLock(store, KEY, "run 'r1' stage 'gather'", alive=lambda pid: pid != 999_999)
    lock.acquire()
    mine = json.loads(store.get_bytes(KEY))
    assert mine["token"] != "dead" and mine["host"] == socket.gethostname()
    assert any("taking over the lock of pid 999999" in w for w in lock_warnings)
    lock.release()
    assert not store.exists(KEY)


def test_racing_takeovers_of_one_stale_lock_leave_one_holder(store: ArtifactStore) -> None:
    dead = Holder(999_999, socket.gethostname(), "2020-01-01T00:00:00+00:00", "dead")
    store.put_bytes(KEY, dead.to_bytes())
    barrier = threading.Barrier(4)
    won: list[StoreLock] = []

    def racer() -> None:
        lock = StoreLock(store, KEY, "x", alive=lambda pid: pid != 999_999)
        barrier.wait()
        if lock.try_acquire() is None:
            won.append(lock)

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_a_holder_on_another_host_is_never_taken_over(store: ArtifactStore) -> None:
    remote = Holder(1, "some-other-host", "2020-01-01T00:00:00+00:00", "remote")
    store.put_bytes(KEY, remote.to_bytes())
    with pytest.raises(LockHeld, match="pid 1 on host some-other-host since 2020-01-01"):
        StoreLock(store, KEY, "x", alive=lambda pid: False).acquire()
    assert store.get_bytes(KEY) == remote.to_bytes()


def test_wait_takes_the_lock_once_the_holder_releases_it(store: ArtifactStore) -> None:
    holder = StoreLock(store, KEY, "x")
    holder.acquire()
    timer = threading.Timer(0.5, holder.release)
    timer.start()
    waiter = StoreLock(store, KEY, "x")
    start = time.monotonic()
    waiter.acquire(wait=True, poll_s=0.05, timeout_s=20)
    assert time.monotonic() - start >= 0.4
    timer.join()
    assert json.loads(store.get_bytes(KEY))["token"] == waiter._holder.token  # type: ignore[union-attr]
    waiter.release()
