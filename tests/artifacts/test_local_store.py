"""What only the local-directory backend does: files under a root, temp-file-then-rename."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore, open_store
from chimera_core.artifacts import local as local_module
from chimera_core.config.models import ArtifactsConfig
from chimera_core.errors import ArtifactError, StorageFault


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_keys_are_files_under_the_root(local_store: LocalArtifactStore) -> None:
    uri = local_store.put_bytes("runs/r1/a.txt", b"x")
    path = local_store.root / "runs" / "r1" / "a.txt"
    assert path.read_bytes() == b"x"
    assert uri == path.as_uri()
    assert uri.startswith("file:///")
    assert local_store.path("runs/r1/a.txt") == path


def test_open_store_local(tmp_path: Path) -> None:
    store = open_store(ArtifactsConfig(backend="local", local_root=tmp_path / "arts"))
    assert isinstance(store, LocalArtifactStore)
    assert store.root == (tmp_path / "arts").resolve()


def _fail_fsync(fd: int) -> None:
    raise OSError(28, "No space left on device")


def test_failed_write_leaves_no_partial_object_and_no_stray_file(
    local_store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_store.put_bytes("runs/r1/weights.bin", b"old, complete")
    src = tmp_path / "new.bin"
    src.write_bytes(b"n" * 100_000)
    # The bytes are written, then the disk fills up before the rename.
    monkeypatch.setattr(local_module.os, "fsync", _fail_fsync)
    with pytest.raises(StorageFault, match="No space left") as err:
        local_store.put_file("runs/r1/weights.bin", src)
    assert local_store.uri("runs/r1/weights.bin") in str(err.value)  # the key, not the temp file
    with pytest.raises(StorageFault, match="No space left"):
        local_store.put_bytes("runs/r1/new.bin", b"n" * 100_000)
    monkeypatch.undo()
    assert local_store.get_bytes("runs/r1/weights.bin") == b"old, complete"
    assert not local_store.exists("runs/r1/new.bin")
    assert _all_files(local_store.root) == ["runs/r1/weights.bin"]


def test_failed_download_leaves_destination_untouched(
    local_store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_store.put_bytes("k", b"stored")
    dest = tmp_path / "out" / "k"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    monkeypatch.setattr(local_module.os, "fsync", _fail_fsync)
    with pytest.raises(StorageFault, match=f"{dest} .a download from the artifact store"):
        local_store.get_file("k", dest)
    assert dest.read_bytes() == b"previous"
    assert _all_files(dest.parent) == ["k"]


def test_list_ignores_in_flight_writes_but_not_keys_named_part(
    local_store: LocalArtifactStore,
) -> None:
    local_store.put_bytes("d/real.bin", b"x")
    local_store.put_bytes("d/notes.part", b"a key may end in .part")
    (local_store.root / "d" / ".real.bin.k3j2h1.part").write_bytes(b"half")
    assert list(local_store.list()) == ["d/notes.part", "d/real.bin"]


def test_root_is_created_and_resolved(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "a" / ".." / "b")
    assert store.root == (tmp_path / "b").resolve()
    assert store.root.is_dir()


def test_tampered_manifest_cannot_write_outside_destination(
    local_store: LocalArtifactStore, tmp_path: Path
) -> None:
    local_store.put_bytes("ckpt/a.bin", b"a")
    manifest = {"files": {"../../escaped.bin": {"sha256": "0" * 64, "size": 1}}, "metadata": {}}
    local_store.put_bytes("ckpt/manifest.json", json.dumps(manifest).encode())
    dest = tmp_path / "deep" / "restored"
    with pytest.raises(ArtifactError, match="escapes"):
        local_store.get_dir("ckpt", dest)
    assert not (tmp_path / "escaped.bin").exists()
