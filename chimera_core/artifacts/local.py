"""Artifact store on a local directory: write to a temp file, then rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from chimera_core.artifacts.base import ArtifactStore, normalize_key
from chimera_core.errors import ArtifactNotFound


def _is_temp(name: str) -> bool:
    """Whether a file name is an in-flight write (``.<name>.<random>.part``), not a key."""
    return name.startswith(".") and name.endswith(".part")


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files under one root directory."""

    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file backing a key."""
        return self.root / normalize_key(key)

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def _atomic_write(self, target: Path, write: object) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)  # type: ignore[operator]
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _atomic_copy(self, src: Path, target: Path) -> None:
        def copy(fh: object) -> None:
            with Path(src).open("rb") as rf:
                shutil.copyfileobj(rf, fh)  # type: ignore[arg-type]

        self._atomic_write(target, copy)

    def put_file(self, key: str, src: Path) -> str:
        self._atomic_copy(src, self.path(key))
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        self._atomic_write(self.path(key), lambda fh: fh.write(data))
        return self.uri(key)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        # Write a temp file, then hard-link it into place: link() fails if the target exists
        # (create-if-absent, like O_EXCL) and the target appears with its whole content.
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)

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
        return src.read_bytes()

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
        self.path(key).unlink(missing_ok=True)
