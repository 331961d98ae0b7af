"""Stamps of a model directory's last passing full check, so a reuse costs one stat per file.

Hashing a prepared model and scanning its weights takes about a second for SmolLM2-135M (540 MB:
sha256 0.7 s, the NaN/Inf scan 0.3 s on a CI runner) and grows with the model: a 7B one would
add half a minute to every stage and server start. So the full check runs when a directory is
first used after it changed, and a stamp (``<models_dir>/.verified/``) records each file's
size, mtime and ctime as they were then; a later use whose files all still match skips it.
ctime is in the stamp because any write, truncate, chmod or utime moves it to now, so even a
rewrite that puts the mtime back counts as a change. What a stamp cannot see is damage below the
file system (bit rot): ``chimera model list --verify`` hashes everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAMPS_DIR = ".verified"
# File systems stamp times coarsely (a few ms): a file changed this recently could change again
# within the same tick and keep its times. Such a directory is not stamped yet ("racy git").
RACY_SECONDS = 2.0


def checked_problems(
    directory: Path, models_dir: Path, full_check: Callable[[Path], list[str]]
) -> list[str]:
    """``full_check(directory)``, skipped when no file changed since it last passed."""
    stamp = stamp_path(models_dir, directory)
    # Stat before checking: a file changed during the check no longer matches the stamp.
    before = _stats(directory)
    if _read(stamp) == before:
        return []
    problems = full_check(directory)
    if not problems and _settled(before):
        _write(stamp, before)
    return problems


def stamp_path(models_dir: Path, directory: Path) -> Path:
    """Where a directory's stamp lives: under ``models_dir``, named by its resolved path."""
    key = hashlib.sha256(str(directory.expanduser().resolve()).encode()).hexdigest()[:24]
    return models_dir.expanduser().resolve() / STAMPS_DIR / f"{key}.json"


def _stats(directory: Path) -> dict[str, Any]:
    """Each file's size, mtime and ctime (ns), by relative path."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        st = path.stat()
        files[path.relative_to(directory).as_posix()] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return {"path": str(directory.expanduser().resolve()), "files": files}


def _settled(stats: dict[str, Any]) -> bool:
    """Whether every file's times are older than the racy window."""
    cutoff = time.time_ns() - int(RACY_SECONDS * 1e9)
    return all(mtime < cutoff and ctime < cutoff for _, mtime, ctime in stats["files"].values())


def _read(stamp: Path) -> Any:
    """A stamp's contents, None when missing or unreadable (then the full check runs)."""
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def _write(stamp: Path, stats: dict[str, Any]) -> None:
    """Write a stamp atomically; a read-only models dir only costs the next use a full check."""
    with contextlib.suppress(OSError):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=stamp.parent, prefix=f".{stamp.name}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(stats, fh)
        os.replace(tmp, stamp)
