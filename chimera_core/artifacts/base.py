"""The artifact store interface shared by the local and S3 backends.

Keys are POSIX-style relative paths (``runs/<run_id>/<stage>/file``). Every write is atomic:
a reader sees the old object or the whole new one, never a part. Manifests (``manifest.json``)
list each file of a published directory with its sha256 and are written last, so a
directory without a manifest is not published.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import posixpath
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from chimera_core.errors import ArtifactError, StorageFault

log = logging.getLogger("chimera.artifacts")

MANIFEST = "manifest.json"
# Keys starting with this are the writability probe's (``check_writable``), never artifacts.
PROBE_PREFIX = ".write-probe-"
# A temp file of an in-flight write untouched this long was left by a killed writer.
STALE_TEMP_S = 3600.0
# Bytes in one key part. File systems allow 255 per name, and the local store's in-flight
# write is ``.<name>.<8 random>.part``: 15 more. S3 would take longer parts, but a key must
# mean the same thing in both backends (a run moves from one to the other).
MAX_KEY_PART_BYTES = 240


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (artifact and model manifests both use it)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def normalize_key(key: str) -> str:
    """Validate a key and return its normal form; refuse keys escaping the store's prefix."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ArtifactError(f"invalid artifact key {key!r}: must be a relative POSIX path")
    norm = posixpath.normpath(key)
    if norm == "." or norm.startswith("../") or norm == ".." or "/../" in f"/{norm}/":
        raise ArtifactError(f"invalid artifact key {key!r}: escapes the store prefix")
    for part in norm.split("/"):
        if (size := len(part.encode())) > MAX_KEY_PART_BYTES:
            shown = part if len(part) <= 40 else f"{part[:40]}..."
            raise ArtifactError(
                f"invalid artifact key {key!r}: its part {shown!r} is {size} bytes long, "
                f"at most {MAX_KEY_PART_BYTES} (a file name's limit)"
            )
    return norm


def join_key(*parts: str) -> str:
    """Join key parts with '/', validating the result."""
    return normalize_key("/".join(p.strip("/") for p in parts if p))


class ArtifactStore(ABC):
    """One interface for artifacts and checkpoints, whatever the backend."""

    scheme: str

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI naming a key in this store (``file://...`` or ``s3://bucket/...``)."""

    @abstractmethod
    def root_uri(self) -> str:
        """The URI of the store itself (its directory, or bucket and prefix), for messages."""

    @abstractmethod
    def put_file(self, key: str, src: Path) -> str:
        """Publish a local file atomically under key; return its URI."""

    @abstractmethod
    def get_file(self, key: str, dest: Path) -> Path:
        """Download key into dest (atomically); raise ``ArtifactNotFound`` if absent."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str:
        """Publish bytes atomically under key; return its URI."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a whole object; raise ``ArtifactNotFound`` if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists at key."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under prefix (recursive), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object if present."""

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Publish bytes under key only if nothing is there; return whether this call did.

        Atomic create-if-absent: of several callers racing on one key exactly one gets True,
        and a reader sees the whole object or none (the primitive behind locks and pins).
        """

    # Shared behaviour built on the primitives above.

    def check_writable(self) -> None:
        """Write and delete a small probe object; a ``StorageFault`` naming the store if either
        fails (read-only, full, refused). Cheap: stages call it before they start working."""
        key = f"{PROBE_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self.put_bytes(key, b"chimera write probe\n")
            self.delete(key)
        except ArtifactError as exc:
            raise StorageFault(
                f"the artifact store {self.root_uri()} is not writable: {exc}"
            ) from exc

    def clean_stale_temp(self, max_age_s: float = STALE_TEMP_S) -> Sequence[str]:
        """Remove what killed writes left behind, untouched for ``max_age_s``; return it.

        A backend whose writes leave nothing visible behind (S3: one PUT, or a multipart
        upload aborted on failure) has nothing to clean.
        """
        return []

    def put_json(self, key: str, obj: Any) -> str:
        """Publish an object as indented JSON."""
        return self.put_bytes(key, json.dumps(obj, indent=2, sort_keys=True).encode())

    def get_json(self, key: str) -> Any:
        """Read a JSON object."""
        raw = self.get_bytes(key)
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{self.uri(key)} is not valid JSON: {exc}") from None

    def put_dir(self, prefix: str, src: Path, metadata: dict[str, Any] | None = None) -> str:
        """Upload a directory then its manifest (sha256 per file), so it is complete or absent."""
        prefix = normalize_key(prefix)
        if not src.is_dir():
            raise ArtifactError(f"not a directory: {src}")
        # A failure before the manifest removes what this call uploaded, unless the directory
        # was published before (its files are then a published artifact's, damaged or not).
        fresh = not self.is_published(prefix)
        uploaded: builtins.list[str] = []
        files = {}
        try:
            for path in sorted(p for p in src.rglob("*") if p.is_file()):
                rel = path.relative_to(src).as_posix()
                if rel == MANIFEST:
                    continue
                key = join_key(prefix, rel)
                uploaded.append(key)  # before the upload: a failed one may have landed
                self.put_file(key, path)
                files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
            manifest = {"files": files, "metadata": metadata or {}}
            self.put_json(join_key(prefix, MANIFEST), manifest)
        except Exception:
            if fresh:
                self._remove_partial(prefix, uploaded)
            raise
        return self.uri(prefix)

    def _remove_partial(self, prefix: str, keys: Sequence[str]) -> None:
        """Delete the files of a directory upload that failed; warn about any left behind."""
        left = []
        for key in keys:
            try:
                self.delete(key)
            except ArtifactError:
                left.append(key)
        if left:
            log.warning(
                "the failed upload of %s left %d file(s) the store would not delete (first: "
                "%s); without a manifest they are not published, and the next upload replaces "
                "them",
                self.uri(prefix),
                len(left),
                self.uri(left[0]),
            )

    def get_dir(self, prefix: str, dest: Path, verify: bool = True) -> Path:
        """Download a published directory, checking every file against its manifest."""
        prefix = normalize_key(prefix)
        manifest = self.get_json(join_key(prefix, MANIFEST))
        dest.mkdir(parents=True, exist_ok=True)
        for name, info in manifest["files"].items():
            rel = normalize_key(name)  # a tampered manifest must not write outside dest
            target = dest / rel
            if target.is_file() and sha256_file(target) == info["sha256"]:
                continue  # already here from an earlier, interrupted download
            self.get_file(join_key(prefix, rel), target)
            if verify and sha256_file(target) != info["sha256"]:
                target.unlink()  # never leave corrupt bytes where a reader might use them
                raise ArtifactError(f"checksum mismatch for {self.uri(join_key(prefix, rel))}")
        (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return dest

    def is_published(self, prefix: str) -> bool:
        """Whether a directory artifact has its manifest (i.e. was published completely)."""
        return self.exists(join_key(prefix, MANIFEST))
