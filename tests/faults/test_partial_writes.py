"""Writes cut short: a directory upload that fails before its manifest removes what it uploaded
(local and S3), and the ``.part`` file a killed writer leaves in the local store is removed by
the next stage once it is stale (an hour untouched: a write in flight is never taken).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3

from chimera_core.artifacts import ArtifactStore, LocalArtifactStore
from chimera_core.artifacts.s3 import S3ArtifactStore
from chimera_core.config import load_config
from chimera_core.errors import StorageFault
from chimera_core.model_registry import ModelRegistry
from chimera_core.stages.base import StageContext, StageResult, execute_stage
from tests.artifacts.conftest import make_s3_store, unique_bucket
from tests.faults.scripted_gather import files, refuse_writes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each backend in turn."""
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "store")
    s3 = make_s3_store(request.getfixturevalue("s3_server"), unique_bucket())
    s3.ensure_bucket()
    return s3


def _checkpoint(tmp_path: Path) -> Path:
    src = tmp_path / "checkpoint"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"a" * 1000)
    (src / "b.bin").write_bytes(b"b" * 1000)
    (src / "sub" / "c.bin").write_bytes(b"c" * 1000)
    return src


def _fail_writes(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch, name: str
) -> Callable[[], int]:
    """The store's writes of a file called ``name`` fail (local: ENOSPC; S3: connection
    dropped on every attempt); returns how many were refused."""
    refused: list[Any] = []
    if isinstance(store, LocalArtifactStore):
        refusal = refuse_writes(monkeypatch, errno.ENOSPC, lambda target: target.name == name)
        return lambda: len(refusal.refused)
    assert isinstance(store, S3ArtifactStore)
    for method in ("fput_object", "put_object"):
        real = getattr(store._client, method)

        def dropping(bucket: str, obj: str, *args: Any, _real: Any = real, **kw: Any) -> Any:
            if obj.rsplit("/", 1)[-1] == name:
                refused.append(obj)
                raise urllib3.exceptions.ProtocolError("Connection aborted.")
            return _real(bucket, obj, *args, **kw)

        monkeypatch.setattr(store._client, method, dropping)
    return lambda: len(refused)


@pytest.mark.parametrize("failing", ["b.bin", "manifest.json"])
def test_a_directory_upload_that_fails_removes_what_it_uploaded(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    src = _checkpoint(tmp_path)
    store.put_bytes("other/kept.txt", b"not part of the upload")
    with monkeypatch.context() as m:
        refused = _fail_writes(store, m, failing)
        with pytest.raises(StorageFault) as err:
            store.put_dir("models/a/versions/v1", src)
        assert refused() >= 1
    assert store.uri(f"models/a/versions/v1/{failing}") in str(err.value)  # the key, the error
    assert "No space left on device" in str(err.value) or "Connection aborted" in str(err.value)
    assert list(store.list()) == ["other/kept.txt"]  # no orphan: a.bin (and the rest) removed
    assert not store.is_published("models/a/versions/v1")
    if isinstance(store, LocalArtifactStore):
        assert files(store.root) == ["other/kept.txt"]  # no temp file either

    # Once the store takes writes, the same upload publishes the whole directory.
    store.put_dir("models/a/versions/v1", src)
    out = store.get_dir("models/a/versions/v1", tmp_path / "out")
    assert (out / "sub" / "c.bin").read_bytes() == b"c" * 1000


def test_files_the_store_will_not_delete_after_a_failed_upload_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    refuse_writes(monkeypatch, errno.ENOSPC, lambda target: target.name == "b.bin")

    def refuse_delete(key: str) -> None:
        raise StorageFault(f"delete of {store.uri(key)} failed: [Errno 30] Read-only file system")

    monkeypatch.setattr(store, "delete", refuse_delete)
    with pytest.raises(StorageFault, match="b.bin"):  # the upload's error, not the cleanup's
        store.put_dir("ckpt", _checkpoint(tmp_path))
    assert f"the failed upload of {store.uri('ckpt')} left 2 file(s)" in caplog.text
    assert store.uri("ckpt/a.bin") in caplog.text
    assert not store.is_published("ckpt")


def test_a_failed_upload_over_a_published_directory_keeps_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its files belong to a published artifact: removing them would not undo the overwrite.
    store = LocalArtifactStore(tmp_path / "store")
    src = _checkpoint(tmp_path)
    store.put_dir("ckpt", src)
    with monkeypatch.context() as m:
        refuse_writes(m, errno.ENOSPC, lambda target: target.name == "b.bin")
        with pytest.raises(StorageFault):
            store.put_dir("ckpt", src)
    assert store.get_dir("ckpt", tmp_path / "out").is_dir()  # complete and verified


def test_a_version_whose_upload_failed_is_registered_under_its_name_on_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    registry = ModelRegistry(store, tmp_path / "cache")
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.json").write_text('{"weights": [0.5]}')
    (policy / "state.json").write_text('{"n": 3}')
    args: dict[str, Any] = {"parent": "base", "stage": "bandit", "run_id": "r1"}
    with monkeypatch.context() as m:
        refuse_writes(m, errno.ENOSPC, lambda target: target.name == "state.json")
        with pytest.raises(StorageFault, match="state.json"):
            registry.register("supervisor_policy", policy, **args)
    assert registry.versions("supervisor_policy") == [] and files(store.root) == []
    assert registry.register("supervisor_policy", policy, **args).version == "bandit-r1"


# Temp files of killed writes.

WRITER = """
import sys
from pathlib import Path
from chimera_core.artifacts import LocalArtifactStore

LocalArtifactStore(Path(sys.argv[1])).put_file("runs/r1/big.bin", Path(sys.argv[2]))
"""


def _killed_write(tmp_path: Path, root: Path) -> Path:
    """A real writer process killed mid-write; returns the temp file it left."""
    fifo = tmp_path / "source"
    os.mkfifo(fifo)  # a source that never ends: the write stays in flight
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(fifo)], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:  # the writer opens the source once its temp file exists
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:  # ENXIO: no reader yet
                assert exc.errno == errno.ENXIO, exc
                assert proc.poll() is None and time.monotonic() < deadline, "the writer died"
                time.sleep(0.05)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as source:
            source.write(b"x" * 200_000)  # more than a read buffer: some lands in the file
            source.flush()
            deadline = time.monotonic() + 60
            while not [p for p in (root / "runs" / "r1").glob(".*.part") if p.stat().st_size]:
                assert proc.poll() is None and time.monotonic() < deadline, "no write in flight"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (part,) = (root / "runs" / "r1").glob(".*.part")
    return part


def _stage(ctx: StageContext) -> StageResult:
    return StageResult(stage=ctx.stage, run_id=ctx.run_id)


def test_a_killed_writes_temp_file_is_removed_by_the_next_stage_once_stale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    part = _killed_write(tmp_path, store.root)
    assert part.name.startswith(".big.bin.") and list(store.list()) == []  # never a key
    config = load_config("local", environ={}, overrides={"serving.models_dir": str(tmp_path)})

    # Fresh: it could be another process's write in flight, so it stays.
    execute_stage(_stage, "gather", config, "r1", store=store)
    assert part.exists()

    hour_ago = time.time() - 3601
    os.utime(part, (hour_ago, hour_ago))
    caplog.set_level(logging.WARNING)
    execute_stage(_stage, "gather", config, "r2", store=store)
    assert not part.exists()
    assert f"removed 1 temp file(s) of writes killed long ago (first: runs/r1/{part.name})" in (
        caplog.text
    )
    assert [p for p in files(store.root) if p.endswith(".part")] == []


def test_cleaning_takes_only_stale_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    store.put_bytes("d/notes.part", b"a key may end in .part")  # a key, not a temp file
    old, fresh = store.root / "d" / ".a.json.k3j2h1.part", store.root / "d" / ".b.json.x9.part"
    old.write_bytes(b"half")
    fresh.write_bytes(b"in flight")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(store.path("d/notes.part"), (time.time() - 7200, time.time() - 7200))
    assert store.clean_stale_temp() == ["d/.a.json.k3j2h1.part"]
    assert not old.exists() and fresh.exists() and store.exists("d/notes.part")
    assert store.clean_stale_temp(max_age_s=0) == ["d/.b.json.x9.part"]
