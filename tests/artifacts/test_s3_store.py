"""What only the S3 backend does: layout in the bucket, multipart, retries, resume, errors.

Runs against moto on 127.0.0.1 (and nanio for credentials, which moto ignores); faults come
from a small TCP proxy between the client and the server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
from pydantic import SecretStr

from chimera_core.artifacts import open_store, sha256_file
from chimera_core.artifacts.s3 import S3ArtifactStore
from chimera_core.config.models import ArtifactsConfig
from chimera_core.errors import ArtifactError, ArtifactNotFound
from tests.artifacts.conftest import (
    NANIO_ACCESS_KEY,
    NANIO_SECRET_KEY,
    TEST_SECRET_KEY,
    free_port,
    make_s3_store,
    unique_bucket,
)
from tests.artifacts.fault_proxy import FaultProxy, Request

CRED_ENV = (
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials from the developer's shell must not leak into these tests."""
    for name in CRED_ENV:
        monkeypatch.delenv(name, raising=False)


def _range_start(request: Request) -> int:
    value = request.headers["range"]
    assert value.startswith("bytes=") and value.endswith("-"), value
    return int(value.removeprefix("bytes=").removesuffix("-"))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


# Layout, listing, multipart.


def test_keys_live_under_the_prefix_in_the_bucket(s3_store: S3ArtifactStore) -> None:
    uri = s3_store.put_bytes("runs/r1/a.txt", b"x")
    assert uri == f"s3://{s3_store.bucket}/team/run/runs/r1/a.txt"
    names = [o.object_name for o in s3_store._client.list_objects(s3_store.bucket, recursive=True)]
    assert names == ["team/run/runs/r1/a.txt"]
    assert list(s3_store.list()) == ["runs/r1/a.txt"]


def test_stores_with_other_prefixes_do_not_see_each_other(
    s3_server: str, s3_store: S3ArtifactStore
) -> None:
    other = make_s3_store(s3_server, s3_store.bucket, prefix="team/run2")
    whole = make_s3_store(s3_server, s3_store.bucket, prefix="")
    s3_store.put_bytes("k", b"1")
    other.put_bytes("k", b"2")
    assert s3_store.get_bytes("k") == b"1"
    assert other.get_bytes("k") == b"2"
    assert list(s3_store.list()) == ["k"]
    assert list(whole.list()) == ["team/run/k", "team/run2/k"]
    assert whole.uri("x/y") == f"s3://{s3_store.bucket}/x/y"


def test_prefix_is_normalised(s3_server: str) -> None:
    store = make_s3_store(s3_server, unique_bucket(), prefix="/a/b/")
    assert store.prefix == "a/b"
    assert store.uri("k") == f"s3://{store.bucket}/a/b/k"


def test_large_files_use_multipart_small_ones_a_single_put(
    s3_store: S3ArtifactStore, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(30 * 1024 * 1024))
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    s3_store.put_file("big.bin", big)
    s3_store.put_file("small.bin", small)
    stat = s3_store._client.stat_object(s3_store.bucket, s3_store.object_name("big.bin"))
    assert stat.etag is not None and stat.etag.endswith("-4")  # 30 MB in 8 MiB parts
    stat = s3_store._client.stat_object(s3_store.bucket, s3_store.object_name("small.bin"))
    assert stat.etag == hashlib.md5(small.read_bytes()).hexdigest()
    out = s3_store.get_file("big.bin", tmp_path / "out.bin")
    assert sha256_file(out) == sha256_file(big)


def test_failed_multipart_upload_leaves_no_object_and_no_parts(
    s3_store: S3ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_store.put_bytes("weights.bin", b"old, complete")
    src = tmp_path / "new.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024))
    completions: list[str] = []

    def fail_completion(*args: Any, **kwargs: Any) -> None:
        completions.append(args[1])
        raise urllib3.exceptions.ProtocolError("connection dropped before completion")

    monkeypatch.setattr(s3_store._client, "_complete_multipart_upload", fail_completion)
    with pytest.raises(ArtifactError) as err:
        s3_store.put_file("weights.bin", src)
    with pytest.raises(ArtifactError):
        s3_store.put_file("fresh.bin", src)
    message = str(err.value)
    assert s3_store.uri("weights.bin") in message
    assert "after 3 attempt(s)" in message
    assert len(completions) == 6  # retried: 1 + max_retries, per upload
    monkeypatch.undo()
    assert s3_store.get_bytes("weights.bin") == b"old, complete"
    assert not s3_store.exists("fresh.bin")
    assert list(s3_store.list()) == ["weights.bin"]
    uploads = s3_store._client._list_multipart_uploads(s3_store.bucket).uploads
    assert uploads == []  # every failed attempt aborted its upload


# Transient faults and retries.


def test_slowdown_and_5xx_are_retried(
    s3_store: S3ArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chimera.artifacts.s3")
    with FaultProxy(s3_store.endpoint, slowdowns=2) as proxy:
        store = make_s3_store(proxy.endpoint, s3_store.bucket, max_retries=3)
        store.put_bytes("a.txt", b"through the proxy")
        assert proxy.slowdowns_sent == 2
    assert s3_store.get_bytes("a.txt") == b"through the proxy"
    assert "retry 1/3" in caplog.text and "retry 2/3" in caplog.text
    assert TEST_SECRET_KEY not in caplog.text


def test_persistent_slowdown_gives_a_clear_error(s3_store: S3ArtifactStore) -> None:
    with FaultProxy(s3_store.endpoint, slowdowns=100) as proxy:
        store = make_s3_store(proxy.endpoint, s3_store.bucket, max_retries=2)
        with pytest.raises(ArtifactError) as err:
            store.get_bytes("a.txt")
        assert proxy.slowdowns_sent == 3
    message = str(err.value)
    assert store.uri("a.txt") in message
    assert "after 3 attempt(s)" in message
    assert not isinstance(err.value, ArtifactNotFound)


def test_unreachable_endpoint_is_retried_then_named(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    store = make_s3_store(f"127.0.0.1:{port}", unique_bucket(), max_retries=2, region="us-east-1")
    started = time.monotonic()
    with pytest.raises(ArtifactError) as err:
        store.put_bytes("k", b"x")
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert store.uri("k") in message
    assert f"http://127.0.0.1:{port}" in message
    assert "after 3 attempt(s)" in message
    assert TEST_SECRET_KEY not in message


def test_transient_network_errors_are_retried(
    s3_store: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_store.put_bytes("k", b"value")
    real = s3_store._http.urlopen
    failures = [urllib3.exceptions.ReadTimeoutError(None, "/k", "read timed out")]  # type: ignore[arg-type]
    failures.append(urllib3.exceptions.ProtocolError("Connection aborted."))  # type: ignore[arg-type]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(s3_store._http, "urlopen", flaky)
    assert s3_store.get_bytes("k") == b"value"
    assert failures == []


# Resume after a dropped connection.


@pytest.fixture
def three_mb(s3_store: S3ArtifactStore, tmp_path: Path) -> tuple[str, str]:
    """A 3 MiB random object in s3_store: (key, sha256)."""
    data = os.urandom(3 * 1024 * 1024)
    s3_store.put_bytes("ckpt/model.bin", data)
    return "ckpt/model.bin", hashlib.sha256(data).hexdigest()


def test_download_resumes_after_a_dropped_connection(
    s3_store: S3ArtifactStore, three_mb: tuple[str, str], tmp_path: Path
) -> None:
    key, digest = three_mb
    path = f"/{s3_store.bucket}/{s3_store.object_name(key)}"
    with FaultProxy(s3_store.endpoint, cut_path=path, cut_after=1_000_000, cut_gets=1) as proxy:
        store = make_s3_store(proxy.endpoint, s3_store.bucket)
        dest = store.get_file(key, tmp_path / "dl" / "model.bin")
        gets = proxy.gets(path)
        assert proxy.cuts == 1
    assert sha256_file(dest) == digest
    assert _leftovers(tmp_path / "dl") == ["model.bin"]
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    assert gets[0].headers["if-match"] == gets[1].headers["if-match"]
    start = _range_start(gets[1])
    # It asked only for what was missing: from the bytes already written, not from zero.
    assert 0 < start < 1_000_000
    assert start >= 1_000_000 - 4096  # every body byte that arrived was kept
    etag = s3_store._client.stat_object(s3_store.bucket, s3_store.object_name(key)).etag
    assert gets[1].headers["if-match"] == f'"{etag}"'


def test_download_resumes_across_several_drops(
    s3_store: S3ArtifactStore, three_mb: tuple[str, str], tmp_path: Path
) -> None:
    key, digest = three_mb
    path = f"/{s3_store.bucket}/{s3_store.object_name(key)}"
    with FaultProxy(s3_store.endpoint, cut_path=path, cut_after=700_000, cut_gets=3) as proxy:
        store = make_s3_store(proxy.endpoint, s3_store.bucket, max_retries=5)
        dest = store.get_file(key, tmp_path / "model.bin")
        gets = proxy.gets(path)
    assert sha256_file(dest) == digest
    starts = [0] + [_range_start(g) for g in gets[1:]]
    assert len(starts) == 4
    assert starts == sorted(set(starts))  # each retry starts further on


def test_download_that_keeps_failing_leaves_nothing(
    s3_store: S3ArtifactStore, three_mb: tuple[str, str], tmp_path: Path
) -> None:
    key, _ = three_mb
    path = f"/{s3_store.bucket}/{s3_store.object_name(key)}"
    dest = tmp_path / "dl" / "model.bin"
    with FaultProxy(s3_store.endpoint, cut_path=path, cut_after=400_000, cut_gets=100) as proxy:
        store = make_s3_store(proxy.endpoint, s3_store.bucket, max_retries=2)
        with pytest.raises(ArtifactError) as err:
            store.get_file(key, dest)
        assert proxy.cuts == 3
    assert store.uri(key) in str(err.value)
    assert "after 3 attempt(s)" in str(err.value)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_object_replaced_during_a_download_is_not_spliced(
    s3_store: S3ArtifactStore, three_mb: tuple[str, str], tmp_path: Path
) -> None:
    key, _ = three_mb
    path = f"/{s3_store.bucket}/{s3_store.object_name(key)}"

    def replace() -> None:
        s3_store.put_bytes(key, os.urandom(3 * 1024 * 1024))

    dest = tmp_path / "model.bin"
    with FaultProxy(
        s3_store.endpoint, cut_path=path, cut_after=1_000_000, cut_gets=1, on_cut=replace
    ) as proxy:
        store = make_s3_store(proxy.endpoint, s3_store.bucket)
        with pytest.raises(ArtifactError, match="replaced while it was being downloaded"):
            store.get_file(key, dest)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


# Configuration problems: clear, and not retried.


def _count_requests(store: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = store._http.urlopen

    def counting(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"{method} {url}")
        return real(method, url, *args, **kwargs)

    monkeypatch.setattr(store._http, "urlopen", counting)
    return calls


@pytest.mark.parametrize("op", ["put_bytes", "get_bytes", "exists", "get_file", "list", "delete"])
def test_missing_bucket_is_a_clear_error_and_not_retried(
    s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    store = make_s3_store(s3_server, "no-such-bucket-here", max_retries=5, retry_wait=1.0)
    calls = _count_requests(store, monkeypatch)
    actions: dict[str, Callable[[], object]] = {
        "put_bytes": lambda: store.put_bytes("k", b"x"),
        "get_bytes": lambda: store.get_bytes("k"),
        "exists": lambda: store.exists("k"),
        "get_file": lambda: store.get_file("k", tmp_path / "k"),
        "list": lambda: list(store.list()),
        "delete": lambda: store.delete("k"),
    }
    with pytest.raises(ArtifactError) as err:
        actions[op]()
    assert type(err.value) is ArtifactError  # not ArtifactNotFound: the bucket is the problem
    message = str(err.value)
    assert "bucket 'no-such-bucket-here' does not exist" in message
    assert f"http://{s3_server}" in message
    assert "artifacts.bucket" in message
    assert len(calls) <= 3, calls


def test_ensure_bucket_creates_once(s3_server: str) -> None:
    store = make_s3_store(s3_server, unique_bucket())
    assert store.ensure_bucket() is True
    assert store.ensure_bucket() is False
    store.put_bytes("k", b"x")
    assert store.get_bytes("k") == b"x"


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("endpoint", "http://127.0.0.1:9000", "artifacts.endpoint"),
        ("endpoint", "127.0.0.1:9000/path", "artifacts.endpoint"),
        ("bucket", "b1", "artifacts.bucket"),
        ("bucket", "Bad_Bucket", "artifacts.bucket"),
        ("prefix", "../outside", "artifacts.prefix"),
    ],
)
def test_invalid_settings_are_named(field: str, value: str, match: str) -> None:
    cfg = ArtifactsConfig(backend="s3", **{field: value})
    with pytest.raises(ArtifactError, match=match):
        S3ArtifactStore.from_config(cfg)


# Credentials.


def test_credentials_precedence_config_then_minio_then_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = ArtifactsConfig(backend="s3", bucket="chimera")
    assert S3ArtifactStore.from_config(cfg).credentials_source.startswith("nowhere")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws-user")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    store = S3ArtifactStore.from_config(cfg)
    assert store.credentials_source == "env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    assert store._client._provider.retrieve().access_key == "aws-user"  # type: ignore[union-attr]
    monkeypatch.setenv("MINIO_ROOT_USER", "minio-user")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "minio-secret")
    store = S3ArtifactStore.from_config(cfg)
    assert store.credentials_source == "env MINIO_ROOT_USER/MINIO_ROOT_PASSWORD"
    assert store._client._provider.retrieve().access_key == "minio-user"  # type: ignore[union-attr]
    cfg = ArtifactsConfig(
        backend="s3", access_key=SecretStr("cfg-user"), secret_key=SecretStr("cfg-secret")
    )
    store = S3ArtifactStore.from_config(cfg)
    assert store.credentials_source == "artifacts.access_key/artifacts.secret_key"
    assert store._client._provider.retrieve().access_key == "cfg-user"  # type: ignore[union-attr]
    assert "cfg-secret" not in repr(store) and "cfg-user" not in repr(store)
    assert "cfg-secret" not in str(vars(store))


def test_anonymous_requests_refused_say_where_credentials_go(
    s3_store: S3ArtifactStore,
) -> None:
    s3_store.put_bytes("k", b"x")
    cfg = ArtifactsConfig(
        backend="s3", endpoint=s3_store.endpoint, bucket=s3_store.bucket, prefix="team/run"
    )
    anonymous = S3ArtifactStore.from_config(cfg)
    with pytest.raises(ArtifactError, match="refused") as err:
        anonymous.get_bytes("k")
    message = str(err.value)
    assert "check the credentials" in message
    assert "artifacts.access_key, MINIO_ROOT_USER or AWS_ACCESS_KEY_ID" in message


def test_half_a_credential_pair_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ArtifactsConfig(backend="s3", access_key=SecretStr("only-the-user"))
    with pytest.raises(
        ArtifactError, match=r"artifacts.access_key is set but artifacts.secret_key"
    ):
        S3ArtifactStore.from_config(cfg)
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "lonely-password")
    with pytest.raises(
        ArtifactError, match="MINIO_ROOT_PASSWORD is set but MINIO_ROOT_USER"
    ) as err:
        S3ArtifactStore.from_config(ArtifactsConfig(backend="s3"))
    assert "lonely-password" not in str(err.value)


def test_open_store_s3(s3_store: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    cfg = ArtifactsConfig(
        backend="s3", endpoint=s3_store.endpoint, bucket=s3_store.bucket, prefix="team/run"
    )
    store = open_store(cfg)
    assert isinstance(store, S3ArtifactStore)
    s3_store.put_bytes("k", b"x")
    assert store.get_bytes("k") == b"x"


@pytest.fixture
def nanio_cfg(nanio_server: str) -> ArtifactsConfig:
    """Settings for a fresh bucket on nanio, without credentials."""
    return ArtifactsConfig(
        backend="s3", endpoint=nanio_server, bucket=unique_bucket(), prefix="p", max_retries=3
    )


def test_nanio_accepts_credentials_from_env(
    nanio_cfg: ArtifactsConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MINIO_ROOT_USER", NANIO_ACCESS_KEY)
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", NANIO_SECRET_KEY)
    store = S3ArtifactStore.from_config(nanio_cfg)
    assert store.ensure_bucket() is True
    store.put_bytes("a/b.txt", b"hello")
    assert store.get_bytes("a/b.txt") == b"hello"
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 * 1024 * 1024))
    store.put_file("big.bin", src)  # multipart against a server that checks signatures
    assert sha256_file(store.get_file("big.bin", tmp_path / "out.bin")) == sha256_file(src)
    assert list(store.list()) == ["a/b.txt", "big.bin"]


@pytest.mark.parametrize(
    ("access", "secret", "code"),
    [
        (NANIO_ACCESS_KEY, "wrong-secret-value", "SignatureDoesNotMatch"),
        ("unknown-user", "wrong-secret-value", "InvalidAccessKeyId"),
        (None, None, "AccessDenied|MissingAuthenticationToken"),
    ],
)
@pytest.mark.parametrize("op", ["put_bytes", "get_bytes", "exists", "list"])
def test_bad_credentials_give_a_clear_error_and_are_not_retried(
    nanio_cfg: ArtifactsConfig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    access: str | None,
    secret: str | None,
    code: str,
    op: str,
) -> None:
    good = S3ArtifactStore(
        nanio_cfg.endpoint,
        nanio_cfg.bucket,
        access_key=NANIO_ACCESS_KEY,
        secret_key=NANIO_SECRET_KEY,
    )
    good.ensure_bucket()
    good.put_bytes("p/k", b"x")
    cfg = nanio_cfg.model_copy(
        update={
            "access_key": SecretStr(access) if access else None,
            "secret_key": SecretStr(secret) if secret else None,
        }
    )
    store = S3ArtifactStore.from_config(cfg)
    calls = _count_requests(store, monkeypatch)
    actions: dict[str, Callable[[], object]] = {
        "put_bytes": lambda: store.put_bytes("k", b"y"),
        "get_bytes": lambda: store.get_bytes("k"),
        "exists": lambda: store.exists("k"),
        "list": lambda: list(store.list()),
    }
    with pytest.raises(ArtifactError) as err:
        actions[op]()
    message = str(err.value)
    assert type(err.value) is ArtifactError
    assert any(c in message for c in code.split("|")), message
    assert "check the credentials" in message
    assert nanio_cfg.bucket in message and nanio_cfg.endpoint in message
    if access:
        assert "artifacts.access_key/artifacts.secret_key" in message
    assert "wrong-secret-value" not in message and NANIO_SECRET_KEY not in message
    assert "wrong-secret-value" not in caplog.text
    assert len(calls) <= 2, calls  # not retried
    assert good.get_bytes("p/k") == b"x"


def test_missing_bucket_on_a_server_that_checks_credentials(nanio_server: str) -> None:
    store = S3ArtifactStore(
        nanio_server, "not-created", access_key=NANIO_ACCESS_KEY, secret_key=NANIO_SECRET_KEY
    )
    with pytest.raises(ArtifactError, match="bucket 'not-created' does not exist"):
        store.exists("k")
    with pytest.raises(ArtifactError, match="bucket 'not-created' does not exist"):
        store.put_bytes("k", b"x")
