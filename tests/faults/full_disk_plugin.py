"""A full disk in every process of a real gather, for tests/faults/test_disk_full.py.

Loaded through CHIMERA_PLUGIN_MODULES, which each process (the CLI, the rollout session, its
runners) imports with its plugins before it writes a record or spans. While the file named by
``TEST_FAULT_DISK_FULL`` exists, the local store's writes fail where they would on a full
disk (creating and filling the temp file) with ``No space left on device``. It registers no
hooks; it is a test's fault injection, never a plugin to ship.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from chimera_core.artifacts import LocalArtifactStore

FLAG_ENV = "TEST_FAULT_DISK_FULL"  # not CHIMERA_*: those are configuration


def install() -> None:
    """Wrap the local store's temp-file write (once per process) when FLAG_ENV is set."""
    flag = os.environ.get(FLAG_ENV)
    real = LocalArtifactStore._write_temp
    if not flag or getattr(real, "full_disk", False):
        return

    def write_temp(
        self: LocalArtifactStore, target: Path, write: Callable[[IO[bytes]], object]
    ) -> Path:
        if Path(flag).exists():
            code = errno.ENOSPC
            raise OSError(code, os.strerror(code), str(target.parent / f".{target.name}.part"))
        return real(self, target, write)

    write_temp.full_disk = True  # type: ignore[attr-defined]
    LocalArtifactStore._write_temp = write_temp  # type: ignore[method-assign]


install()
