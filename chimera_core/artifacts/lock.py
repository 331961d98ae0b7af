"""A lock held as an object in the artifact store, so it works across machines on S3/MinIO.

The lock is a small JSON object (holder pid, host, since, a random token) created with
create-if-absent semantics (``ArtifactStore.create_exclusive``): of two processes racing for
it, one creates it and the other sees it held. It is deleted when its holder is done, if it
still holds it.

A holder that died leaves its lock behind. A lock whose holder ran on this host and whose
process is gone is stale and taken over (with a warning); takeovers on one host are
serialised by a local file lock, and the lock is read again under it, so two processes never
both take over the same stale lock. A lock left by a process on another host cannot be judged
from here: the error names its object, to remove by hand once that holder is known dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chimera_core.artifacts.base import ArtifactStore
from chimera_core.errors import ArtifactNotFound, ChimeraError

log = logging.getLogger("chimera.artifacts.lock")


class LockHeld(ChimeraError):
    """Another process holds the lock (exit code 2); the message names the holder."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock."""

    pid: int
    host: str
    since: str
    token: str

    @classmethod
    def me(cls) -> Holder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            since=datetime.now(UTC).isoformat(timespec="seconds"),
            token=secrets.token_hex(8),
        )

    def to_bytes(self) -> bytes:
        payload = {"pid": self.pid, "host": self.host, "since": self.since, "token": self.token}
        return json.dumps(payload, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Holder | None:
        """The holder a lock object names; None for an unreadable one."""
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(int(data["pid"]), str(data["host"]), str(data["since"]), str(data["token"]))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} since {self.since}"


def process_alive(pid: int) -> bool:
    """Whether a process of this host has that pid (one of another user's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _host_mutex(name: str) -> Iterator[None]:
    """A file lock shared by the processes of this host (serialises stale-lock takeovers)."""
    folder = Path(tempfile.gettempdir()) / "chimera-locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock"
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class StoreLock:
    """One lock object in a store; ``what`` names it in messages ("run 'r1' stage 'gather'")."""

    def __init__(
        self,
        store: ArtifactStore,
        key: str,
        what: str,
        *,
        hint: str = "",
        alive: Callable[[int], bool] = process_alive,
    ) -> None:
        self.store = store
        self.key = key
        self.what = what
        self.hint = hint
        self._alive = alive
        self._holder: Holder | None = None

    def _read(self) -> tuple[bytes, Holder | None] | None:
        """The lock's raw bytes and holder, None when there is no lock."""
        try:
            raw = self.store.get_bytes(self.key)
        except ArtifactNotFound:
            return None
        return raw, Holder.from_bytes(raw)

    def _stale(self, holder: Holder | None) -> bool:
        return (
            holder is not None
            and holder.host == socket.gethostname()
            and not self._alive(holder.pid)
        )

    def _take_over(self, raw: bytes, holder: Holder, me: Holder) -> bool:
        """Replace a stale lock by ours, if it is still that stale lock; return whether done."""
        with _host_mutex(self.store.uri(self.key)):
            current = self._read()
            if current is None or current[0] != raw:
                return False  # released or already taken over: contend again
            log.warning(
                "%s: taking over the lock of %s (that process is gone): %s",
                self.what,
                holder.describe(),
                self.store.uri(self.key),
            )
            self.store.delete(self.key)
            return self.store.create_exclusive(self.key, me.to_bytes())

    def try_acquire(self) -> Holder | None:
        """Take the lock if free or stale; otherwise return who holds it."""
        me = Holder.me()
        for _ in range(5):  # a lock released or taken over between two reads: look again
            if self.store.create_exclusive(self.key, me.to_bytes()):
                self._holder = me
                return None
            current = self._read()
            if current is None:
                continue
            raw, holder = current
            if holder is not None and self._stale(holder):
                if self._take_over(raw, holder, me):
                    self._holder = me
                    return None
                continue
            return holder or Holder(0, "unknown (unreadable lock)", "unknown", "")
        current = self._read()
        return (current[1] if current else None) or Holder(0, "unknown", "unknown", "")

    def held_message(self, holder: Holder) -> str:
        return f"{self.what} is locked by {holder.describe()} ({self.store.uri(self.key)})"

    def acquire(
        self, wait: bool = False, poll_s: float = 1.0, timeout_s: float | None = None
    ) -> None:
        """Take the lock; held by another: raise ``LockHeld``, or with ``wait`` poll until free."""
        start = time.monotonic()
        announced = False
        while True:
            holder = self.try_acquire()
            if holder is None:
                return
            if not wait or (timeout_s is not None and time.monotonic() - start >= timeout_s):
                raise LockHeld(self.held_message(holder) + self.hint)
            if not announced:
                log.info("%s; waiting for it", self.held_message(holder))
                announced = True
            time.sleep(poll_s)

    def release(self) -> None:
        """Delete the lock if this object still holds it (never another process's)."""
        me, self._holder = self._holder, None
        if me is None:
            return
        current = self._read()
        if current is not None and current[0] == me.to_bytes():
            self.store.delete(self.key)
        else:
            log.warning("%s: the lock %s was no longer ours", self.what, self.store.uri(self.key))

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
