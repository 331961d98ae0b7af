"""Artifact store on a local directory: write to a temp file, then rename.

A write that fails (disk full, read-only file system) removes its temp file and raises a
``StorageFault`` naming the key, the store and the OS error. A writer killed mid-write leaves
its ``.<name>.<random>.part`` file, invisible to readers; ``clean_stale_temp`` removes those.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from chimera_core.artifacts.base import STALE_TEMP_S, ArtifactStore, normalize_key
from chimera_core.errors import ArtifactError, ArtifactNotFound, StorageFault

log = logging.getLogger("chimera.artifacts")


def _is_temp(name: str) -> bool:
    """Whether a file name is an in-flight write (``.<name>.<random>.part``), not a key."""
    return name.startswith(".") and name.endswith(".part")


def _os_error(exc: OSError) -> str:
    """An OS error without the temp file's name (``[Errno 28] No space left on device``)."""
    if exc.errno is not None and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files under one root directory."""

    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageFault(
                f"cannot create the artifact store directory {self.root}: {_os_error(exc)}"
            ) from exc

    def path(self, key: str) -> Path:
        """The file backing a key."""
        return self.root / normalize_key(key)

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def root_uri(self) -> str:
        return self.root.as_uri()

    def _fault(self, what: str, target: Path, exc: OSError) -> StorageFault:
        if target.is_relative_to(self.root):
            where = f"{target.as_uri()} in the artifact store {self.root_uri()}"
        else:  # a download's destination
            where = f"{target} (a download from the artifact store {self.root_uri()})"
        return StorageFault(f"{what} {where} failed: {_os_error(exc)}")

    def _write_temp(self, target: Path, write: Callable[[IO[bytes]], object]) -> Path:
        """A synced temp file next to target holding what ``write`` wrote (the OS boundary)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def _atomic_write(self, target: Path, write: Callable[[IO[bytes]], object]) -> None:
        try:
            tmp = self._write_temp(target, write)
            try:
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise self._fault("write of", target, exc) from exc

    def _atomic_copy(self, src: Path, target: Path) -> None:
        def copy(fh: IO[bytes]) -> None:
            with Path(src).open("rb") as rf:
                shutil.copyfileobj(rf, fh)

        self._atomic_write(target, copy)

    def put_file(self, key: str, src: Path) -> str:
        if not Path(src).exists() or Path(src).is_dir():
            raise ArtifactError(f"cannot upload {src} to {self.uri(key)}: not a file")
        self._atomic_copy(src, self.path(key))
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        self._atomic_write(self.path(key), lambda fh: fh.write(data))
        return self.uri(key)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        # Write a temp file, then hard-link it into place: link() fails if the target exists
        # (create-if-absent, like O_EXCL) and the target appears with its whole content.
        target = self.path(key)
        try:
            tmp = self._write_temp(target, lambda fh: fh.write(data))
        except OSError as exc:
            raise self._fault("write of", target, exc) from exc
        try:
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            except OSError as exc:
                raise self._fault("write of", target, exc) from exc
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def get_file(self, key: str, dest: Path) -> Path:
        src = self.path(key)
        if not src.is_file():
            raise ArtifactNotFound(f"artifact not found: {self.uri(key)}")
        self._atomic_copy(src, Path(dest))
        return Path(dest)

    def get_bytes(self, key: str) -> bytes:
        src = self.path(key)
        if not src.is_file():
            raise ArtifactNotFound(f"artifact not found: {self.uri(key)}")
        try:
            return src.read_bytes()
        except FileNotFoundError:  # deleted between the check and the read
            raise ArtifactNotFound(f"artifact not found: {self.uri(key)}") from None
        except OSError as exc:
            raise self._fault("read of", src, exc) from exc

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.path(prefix) if prefix else self.root
        if base.is_file():
            yield normalize_key(prefix)
            return
        if not base.is_dir():
            return
        # Sort the key strings, not the Paths: Path order puts "a/b" before "a-c".
        yield from sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not _is_temp(p.name)
        )

    def delete(self, key: str) -> None:
        target = self.path(key)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise self._fault("delete of", target, exc) from exc

    def clean_stale_temp(self, max_age_s: float = STALE_TEMP_S) -> Sequence[str]:
        """Remove ``.part`` files no write touched for ``max_age_s`` (their writer was killed).

        A write in flight keeps its temp file's mtime fresh, so another process's upload is
        never taken; one that failed cleanly already removed its own.
        """
        cutoff = time.time() - max_age_s
        removed = []
        for path in self.root.rglob(".*.part"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(str(path.relative_to(self.root)))
            except FileNotFoundError:
                continue  # its writer finished or another cleaner took it
            except OSError as exc:  # cleaning up never stops the caller's work
                log.warning("could not remove the stale temp file %s: %s", path, _os_error(exc))
        return sorted(removed)
