"""Fixtures for the artifact stores: a real S3 server (moto) on 127.0.0.1, stores on it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_core.artifacts.local import LocalArtifactStore
from chimera_core.artifacts.s3 import S3ArtifactStore
from tests.net import free_port, wait_for_port

# moto ignores credentials; any pair signs requests it accepts.
TEST_ACCESS_KEY = "chimera-test-user"
TEST_SECRET_KEY = "chimera-test-secret-do-not-log"


def unique_bucket() -> str:
    """A fresh, valid bucket name."""
    return f"chimera-{uuid.uuid4().hex[:16]}"


def make_s3_store(
    endpoint: str, bucket: str, prefix: str = "team/run", **kwargs: object
) -> S3ArtifactStore:
    """An S3 store with fast retries, for tests."""
    options: dict[str, object] = {
        "access_key": TEST_ACCESS_KEY,
        "secret_key": TEST_SECRET_KEY,
        "max_retries": 2,
        "retry_wait": 0.01,
        "timeout": 10.0,
    }
    options.update(kwargs)
    return S3ArtifactStore(endpoint, bucket, prefix, **options)  # type: ignore[arg-type]


@pytest.fixture
def s3_store(s3_server: str) -> S3ArtifactStore:
    """An S3 store under a prefix of a fresh bucket."""
    store = make_s3_store(s3_server, unique_bucket())
    assert store.ensure_bucket() is True
    return store


@pytest.fixture
def local_store(tmp_path: Path) -> LocalArtifactStore:
    """A local store in a temporary directory."""
    return LocalArtifactStore(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> LocalArtifactStore | S3ArtifactStore:
    """Each backend in turn, for the behaviour they share."""
    if request.param == "local":
        return request.getfixturevalue("local_store")
    return request.getfixturevalue("s3_store")


NANIO_ACCESS_KEY = "nanio-test-user"
NANIO_SECRET_KEY = "nanio-test-secret-1234"


@pytest.fixture(scope="session")
def nanio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nanio server (enforces SigV4 credentials) on 127.0.0.1; skipped if not installed."""
    if importlib.util.find_spec("nanio") is None:
        pytest.skip("nanio is not installed (pip install nanio); credential checks need it")
    command = [sys.executable, "-m", "nanio", "serve"]
    port = free_port()
    data_dir = tmp_path_factory.mktemp("nanio-data")
    log_path = tmp_path_factory.mktemp("nanio-log") / "nanio.log"
    env = {**os.environ, "NANIO_ACCESS_KEY": NANIO_ACCESS_KEY, "NANIO_SECRET_KEY": NANIO_SECRET_KEY}
    args = ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    args += ["--no-access-log", "--log-level", "warning"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*command, *args], env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )
    try:
        try:
            wait_for_port(port)
        except RuntimeError:
            proc.kill()
            proc.wait(timeout=5)
            pytest.fail(f"nanio did not start: {log_path.read_text(errors='replace')[-2000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
