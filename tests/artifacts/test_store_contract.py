"""Behaviour both artifact backends share, run against each (local directory, S3 on moto)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from chimera_core.artifacts import MANIFEST, ArtifactStore, sha256_file
from chimera_core.errors import ArtifactError, ArtifactNotFound

BIG_SIZE = 30 * 1024 * 1024


def _leftovers(directory: Path) -> list[str]:
    """Temporary or partial files left in a directory tree."""
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".part"))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 MB of random bytes (large enough for a multipart upload)."""
    path = tmp_path_factory.mktemp("big") / "weights.bin"
    path.write_bytes(os.urandom(BIG_SIZE))
    return path


def test_bytes_round_trip_and_overwrite(store: ArtifactStore) -> None:
    uri = store.put_bytes("runs/r1/notes.txt", b"first")
    assert uri == store.uri("runs/r1/notes.txt")
    assert uri.startswith(f"{store.scheme}://")
    assert store.get_bytes("runs/r1/notes.txt") == b"first"
    store.put_bytes("runs/r1/notes.txt", b"second")
    assert store.get_bytes("runs/r1/notes.txt") == b"second"
    store.put_bytes("runs/r1/empty", b"")
    assert store.get_bytes("runs/r1/empty") == b""


def test_file_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 100)
    store.put_file("runs/r1/blob.bin", src)
    dest = tmp_path / "out" / "nested" / "blob.bin"
    assert store.get_file("runs/r1/blob.bin", dest) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert _leftovers(tmp_path) == []


def test_get_file_replaces_an_existing_destination(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_bytes("k", b"new content")
    dest = tmp_path / "k"
    dest.write_bytes(b"old content that is longer")
    store.get_file("k", dest)
    assert dest.read_bytes() == b"new content"


def test_json_round_trip(store: ArtifactStore) -> None:
    obj = {"b": [1, 2.5, None], "a": {"nested": "é"}}
    store.put_json("runs/r1/metrics.json", obj)
    assert store.get_json("runs/r1/metrics.json") == obj
    store.put_bytes("runs/r1/broken.json", b"{not json")
    with pytest.raises(ArtifactError, match="not valid JSON") as err:
        store.get_json("runs/r1/broken.json")
    assert store.uri("runs/r1/broken.json") in str(err.value)


def test_exists_and_delete(store: ArtifactStore) -> None:
    assert not store.exists("a/b.txt")
    store.put_bytes("a/b.txt", b"x")
    assert store.exists("a/b.txt")
    assert not store.exists("a")  # a "directory" is not an object
    store.delete("a/b.txt")
    assert not store.exists("a/b.txt")
    store.delete("a/b.txt")  # deleting a missing key is not an error


def test_list_is_recursive_sorted_and_bounded_by_prefix(store: ArtifactStore) -> None:
    keys = ["a/b", "a/c/d", "a-c", "ab", "z/y/x", "a/c/a"]
    for key in keys:
        store.put_bytes(key, key.encode())
    assert list(store.list()) == sorted(keys)
    assert list(store.list("a")) == ["a/b", "a/c/a", "a/c/d"]
    assert list(store.list("a/")) == ["a/b", "a/c/a", "a/c/d"]
    assert list(store.list("a/c")) == ["a/c/a", "a/c/d"]
    assert list(store.list("a/b")) == ["a/b"]  # a key lists itself
    assert list(store.list("nothing/here")) == []


def test_missing_key_names_its_uri(store: ArtifactStore, tmp_path: Path) -> None:
    uri = store.uri("runs/none/model.bin")
    with pytest.raises(ArtifactNotFound) as err:
        store.get_bytes("runs/none/model.bin")
    assert uri in str(err.value)
    dest = tmp_path / "dl" / "model.bin"
    with pytest.raises(ArtifactNotFound) as err:
        store.get_file("runs/none/model.bin", dest)
    assert uri in str(err.value)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []
    with pytest.raises(ArtifactNotFound, match="manifest.json"):
        store.get_json("runs/none/manifest.json")


@pytest.mark.parametrize(
    "key", ["../x", "/abs", "a/../../b", "..", "", "a\\b", "../../etc/passwd", "a/b/../../../c"]
)
def test_keys_escaping_the_prefix_are_refused(
    store: ArtifactStore, tmp_path: Path, key: str
) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x")
    calls = [
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_file(key, src),
        lambda: store.put_json(key, {}),
        lambda: store.get_bytes(key),
        lambda: store.get_file(key, tmp_path / "dest"),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.uri(key),
        lambda: store.put_dir(key, tmp_path),
        lambda: store.get_dir(key, tmp_path / "d"),
    ]
    for call in calls:
        with pytest.raises(ArtifactError, match="invalid artifact key"):
            call()
    if key:
        with pytest.raises(ArtifactError, match="invalid artifact key"):
            list(store.list(key))
    assert list(store.list()) == []
    assert not (tmp_path / "dest").exists()


def test_a_key_part_longer_than_a_file_name_allows_is_refused_naming_the_key(
    store: ArtifactStore,
) -> None:
    longest = "k" * 240
    store.put_bytes(f"runs/{longest}/result.json", b"x")  # the limit itself is fine
    assert store.get_bytes(f"runs/{longest}/result.json") == b"x"
    for key in (f"runs/{'r' * 241}/result.json", f"runs/{'é' * 121}"):  # 242 bytes in UTF-8
        with pytest.raises(ArtifactError, match="bytes long, at most 240") as err:
            store.put_bytes(key, b"x")
        assert repr(key) in str(err.value)
    assert list(store.list()) == [f"runs/{longest}/result.json"]


def test_keys_are_normalised(store: ArtifactStore) -> None:
    store.put_bytes("a/./b//c", b"x")
    assert store.exists("a/b/c")
    assert store.uri("a/./b//c") == store.uri("a/b/c")
    assert list(store.list()) == ["a/b/c"]


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "config.json": b'{"lr": 0.001}',
        "weights/model.safetensors": os.urandom(200_000),
        "weights/tokenizer/vocab.txt": b"a\nb\nc\n",
        "empty.txt": b"",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_put_dir_get_dir_with_manifest(store: ArtifactStore, tmp_path: Path) -> None:
    files = _make_tree(tmp_path / "ckpt")
    assert not store.is_published("runs/r1/ckpt")
    uri = store.put_dir("runs/r1/ckpt", tmp_path / "ckpt", metadata={"step": 60})
    assert uri == store.uri("runs/r1/ckpt")
    assert store.is_published("runs/r1/ckpt")

    manifest = store.get_json(f"runs/r1/ckpt/{MANIFEST}")
    assert manifest["metadata"] == {"step": 60}
    assert set(manifest["files"]) == set(files)
    for rel, data in files.items():
        assert manifest["files"][rel] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
    assert list(store.list("runs/r1/ckpt")) == sorted(
        [f"runs/r1/ckpt/{rel}" for rel in files] + [f"runs/r1/ckpt/{MANIFEST}"]
    )

    out = store.get_dir("runs/r1/ckpt", tmp_path / "restored")
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert _leftovers(tmp_path) == []


def test_get_dir_detects_a_corrupted_object(store: ArtifactStore, tmp_path: Path) -> None:
    _make_tree(tmp_path / "ckpt")
    store.put_dir("ckpt", tmp_path / "ckpt")
    store.put_bytes("ckpt/weights/model.safetensors", b"bit rot")
    dest = tmp_path / "restored"
    with pytest.raises(ArtifactError, match="checksum mismatch") as err:
        store.get_dir("ckpt", dest)
    assert store.uri("ckpt/weights/model.safetensors") in str(err.value)
    assert not (dest / MANIFEST).exists()  # an unverified copy is never marked complete
    assert not (dest / "weights/model.safetensors").exists()
    # verify=False is the explicit opt-out.
    store.get_dir("ckpt", dest, verify=False)
    assert (dest / "weights/model.safetensors").read_bytes() == b"bit rot"


def test_unpublished_dir_is_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_bytes("half/a.bin", b"a")  # files without a manifest: an interrupted put_dir
    assert not store.is_published("half")
    with pytest.raises(ArtifactNotFound, match="manifest.json"):
        store.get_dir("half", tmp_path / "out")


def test_large_file_round_trip(store: ArtifactStore, big_file: Path, tmp_path: Path) -> None:
    store.put_file("runs/r1/weights.bin", big_file)
    dest = store.get_file("runs/r1/weights.bin", tmp_path / "weights.bin")
    assert dest.stat().st_size == BIG_SIZE
    assert sha256_file(dest) == sha256_file(big_file)
    assert _leftovers(tmp_path) == []
