"""Artifact store on S3 or MinIO through the ``minio`` SDK.

Writes are atomic (one PUT, or a multipart upload completed at the end). Downloads go to a
``.part`` file and resume with an HTTP Range after a dropped connection. Transient faults are
retried with exponential backoff, then reported as a ``StorageFault`` (exit code 1);
configuration faults (credentials, bucket) are not retried.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import DictType, check_bucket_name
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from chimera_core.artifacts.base import ArtifactStore, normalize_key
from chimera_core.errors import ArtifactError, ArtifactNotFound, StorageFault

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

    from chimera_core.config.models import ArtifactsConfig

log = logging.getLogger("chimera.artifacts.s3")

T = TypeVar("T")

# Files above this size go up as a multipart upload (S3's minimum part is 5 MiB).
PART_SIZE = 8 * 1024 * 1024
_STREAM_CHUNK = 256 * 1024
ANONYMOUS = (
    "nowhere: none of artifacts.access_key, MINIO_ROOT_USER or AWS_ACCESS_KEY_ID is set, "
    "so requests are anonymous"
)

_AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "MissingAuthenticationToken",
        "AuthorizationHeaderMalformed",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "OperationAborted",
        "XMinioServerNotInitialized",
    }
)


class _IncompleteDownload(ConnectionError):
    """The server ended a response before the whole object arrived."""


def _status_of(exc: BaseException) -> int:
    """The HTTP status behind an SDK error, or 0 when there is none."""
    if isinstance(exc, S3Error):
        response = getattr(exc, "response", None)
        return int(getattr(response, "status", 0) or 0)
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        return int(getattr(exc, "_code", 0) or 0)
    return 0


def _is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request may succeed (network fault, 5xx, SlowDown)."""
    if isinstance(exc, S3Error) and exc.code in _TRANSIENT_CODES:
        return True
    if isinstance(exc, MinioException):
        status = _status_of(exc)
        return status >= 500 or status == 429
    if isinstance(exc, urllib3.exceptions.SSLError | urllib3.exceptions.LocationValueError):
        return False
    return isinstance(
        exc,
        urllib3.exceptions.HTTPError | http.client.HTTPException | ConnectionError | TimeoutError,
    )


def _chunks(response: BaseHTTPResponse) -> Iterator[bytes]:
    """The body as it arrives; what came before a dropped connection is kept."""
    if not hasattr(response, "read1"):  # urllib3 1.x
        yield from response.stream(_STREAM_CHUNK)
        return
    # read1 returns what has arrived instead of waiting for a full chunk, which a broken
    # connection would throw away.
    while chunk := response.read1(_STREAM_CHUNK):
        yield chunk


def _pair(
    user: str | None, password: str | None, user_name: str, password_name: str
) -> tuple[str, str] | None:
    """A complete (access, secret) pair, None if both are unset; half a pair is an error."""
    if user and password:
        return user, password
    if user or password:
        missing = password_name if user else user_name
        present = user_name if user else password_name
        raise ArtifactError(f"{present} is set but {missing} is not; set both or neither")
    return None


def resolve_credentials(
    cfg: ArtifactsConfig,
) -> tuple[str | None, str | None, str | None, str]:
    """(access key, secret key, session token, where they came from); config wins over env."""
    access = cfg.access_key.get_secret_value() if cfg.access_key else None
    secret = cfg.secret_key.get_secret_value() if cfg.secret_key else None
    pair = _pair(access, secret, "artifacts.access_key", "artifacts.secret_key")
    if pair:
        return pair[0], pair[1], None, "artifacts.access_key/artifacts.secret_key"
    env = os.environ
    pair = _pair(
        env.get("MINIO_ROOT_USER"),
        env.get("MINIO_ROOT_PASSWORD"),
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
    )
    if pair:
        return pair[0], pair[1], None, "env MINIO_ROOT_USER/MINIO_ROOT_PASSWORD"
    pair = _pair(
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
    if pair:
        token = env.get("AWS_SESSION_TOKEN") or None
        return pair[0], pair[1], token, "env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    return None, None, None, ANONYMOUS


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects under one prefix of an S3/MinIO bucket."""

    scheme = "s3"

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        prefix: str = "",
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        secure: bool = False,
        region: str | None = None,
        max_retries: int = 5,
        retry_wait: float = 0.5,
        part_size: int = PART_SIZE,
        timeout: float = 60.0,
        credentials_source: str = "the store's arguments",
    ) -> None:
        if "://" in endpoint or "/" in endpoint.strip("/") or not endpoint:
            raise ArtifactError(
                f"invalid artifacts.endpoint {endpoint!r}: expected host:port "
                "(use artifacts.secure for https)"
            )
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            raise ArtifactError(f"invalid artifacts.bucket {bucket!r}: {exc}") from None
        prefix = prefix.strip("/")
        if prefix:
            try:
                prefix = normalize_key(prefix)
            except ArtifactError as exc:
                raise ArtifactError(f"invalid artifacts.prefix: {exc}") from None
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = prefix
        self.secure = secure
        self.max_retries = max_retries
        self.retry_wait = retry_wait
        self.part_size = part_size
        self.credentials_source = credentials_source
        self._bucket_ok = False
        # Retries live in one place (tenacity, around whole operations): urllib3 retrying
        # underneath would multiply the attempts and hide the faults from our backoff.
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=False,
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            session_token=session_token,
            secure=secure,
            region=region,
            http_client=self._http,
        )

    @classmethod
    def from_config(cls, cfg: ArtifactsConfig) -> S3ArtifactStore:
        """The store an ``artifacts`` config section describes (credentials: config, then env)."""
        access, secret, token, source = resolve_credentials(cfg)
        return cls(
            cfg.endpoint,
            cfg.bucket,
            cfg.prefix,
            access_key=access,
            secret_key=secret,
            session_token=token,
            secure=cfg.secure,
            region=cfg.region,
            max_retries=cfg.max_retries,
            credentials_source=source,
        )

    def __repr__(self) -> str:
        return (
            f"S3ArtifactStore(endpoint={self.endpoint!r}, bucket={self.bucket!r}, "
            f"prefix={self.prefix!r}, secure={self.secure})"
        )

    @property
    def endpoint_url(self) -> str:
        """The endpoint as a URL, for messages."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    def object_name(self, key: str) -> str:
        """The bucket object name backing a key (the store prefix joined with the key)."""
        norm = normalize_key(key)
        return f"{self.prefix}/{norm}" if self.prefix else norm

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_name(key)}"

    def root_uri(self) -> str:
        return self._bucket_uri()

    # Error handling and retries.

    def _bucket_uri(self) -> str:
        """The URI of the store's root, for messages."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _missing_bucket(self) -> ArtifactError:
        """The error for a bucket that does not exist, saying how to fix it."""
        return ArtifactError(
            f"bucket '{self.bucket}' does not exist at endpoint {self.endpoint_url}; "
            "create it (e.g. `mc mb`, or S3ArtifactStore.ensure_bucket()) or set artifacts.bucket"
        )

    def _refused(self, what: str, uri: str, detail: str) -> ArtifactError:
        """The error for refused credentials, saying where they were taken from."""
        return ArtifactError(
            f"S3 endpoint {self.endpoint_url} refused {what} {uri} ({detail}); check the "
            f"credentials (taken from {self.credentials_source}) and that they may access "
            f"bucket '{self.bucket}'"
        )

    def _translate(self, exc: BaseException, what: str, uri: str) -> ArtifactError:
        """A user-facing error for an SDK or network failure on uri."""
        if isinstance(exc, ArtifactError):
            return exc
        attempts = self.max_retries + 1
        if isinstance(exc, S3Error):
            code = exc.code or "unknown"
            if code == "NoSuchKey":
                return ArtifactNotFound(f"artifact not found: {uri}")
            if code == "NoSuchBucket":
                return self._missing_bucket()
            if code in _AUTH_CODES:
                return self._refused(what, uri, f"{code}: {exc.message}")
            detail = f"{code}: {exc.message}"
        elif isinstance(exc, ServerError | InvalidResponseError):
            detail = f"HTTP {_status_of(exc)}"
            if _status_of(exc) in (401, 403):
                return self._refused(what, uri, detail)
        elif isinstance(exc, ValueError):
            return ArtifactError(f"{what} {uri} refused by the S3 client: {exc}")
        else:
            detail = f"{type(exc).__name__}: {exc}"
        if _is_transient(exc):
            return StorageFault(
                f"{what} {uri} failed after {attempts} attempt(s) ({detail}); "
                f"is the S3 endpoint {self.endpoint_url} up and reachable? "
                "(artifacts.max_retries sets the number of retries)"
            )
        return ArtifactError(f"{what} {uri} failed at {self.endpoint_url} ({detail})")

    def _log_retry(self, what: str, uri: str) -> Callable[[RetryCallState], None]:
        """A tenacity hook logging each retry (the error and the wait, never credentials)."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s %s failed (%s: %s); retry %d/%d in %.1fs",
                what,
                uri,
                type(exc).__name__,
                exc,
                state.attempt_number,
                self.max_retries,
                wait,
            )

        return before_sleep

    def _call(self, what: str, uri: str, fn: Callable[[], T]) -> T:
        """Run fn, retrying transient faults with exponential backoff; translate failures."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential(multiplier=self.retry_wait, max=30),
            retry=retry_if_exception(_is_transient),
            before_sleep=self._log_retry(what, uri),
            reraise=True,
        )
        try:
            return retrying(fn)
        except (
            MinioException,
            ValueError,
            OSError,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
        ) as exc:
            raise self._translate(exc, what, uri) from exc

    def _require_bucket(self) -> None:
        """Fail clearly if the bucket is missing (checked once per store)."""
        if self._bucket_ok:
            return
        exists = self._call(
            "check of bucket",
            self._bucket_uri(),
            lambda: self._client.bucket_exists(self.bucket),
        )
        if not exists:
            raise self._missing_bucket()
        self._bucket_ok = True

    def ensure_bucket(self) -> bool:
        """Create the bucket if it is missing; return whether it was created."""
        uri = f"s3://{self.bucket}"
        if self._call("check of bucket", uri, lambda: self._client.bucket_exists(self.bucket)):
            self._bucket_ok = True
            return False
        try:
            self._call("creation of bucket", uri, lambda: self._client.make_bucket(self.bucket))
        except ArtifactError as exc:
            # Another process may have created it between the check and the create.
            cause = exc.__cause__
            if not (
                isinstance(cause, S3Error)
                and cause.code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
            ):
                raise
        self._bucket_ok = True
        log.info("created bucket %s at %s", self.bucket, self.endpoint_url)
        return True

    def check_writable(self) -> None:
        """The probe write, after the bucket check: a missing bucket stays a config error."""
        self._require_bucket()
        super().check_writable()

    # Primitives.

    def put_file(self, key: str, src: Path) -> str:
        name, uri = self.object_name(key), self.uri(key)
        src = Path(src)
        if not src.is_file():
            raise ArtifactError(f"cannot upload {src} to {uri}: not a file")
        self._call(
            "upload to",
            uri,
            lambda: self._client.fput_object(self.bucket, name, str(src), part_size=self.part_size),
        )
        return uri

    def put_bytes(self, key: str, data: bytes) -> str:
        name, uri = self.object_name(key), self.uri(key)
        self._call(
            "upload to",
            uri,
            lambda: self._client.put_object(
                self.bucket, name, io.BytesIO(data), len(data), part_size=self.part_size
            ),
        )
        return uri

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """A conditional PUT (``If-None-Match: *``): S3 and MinIO refuse it with 412 if the key
        exists.

        minio-py's public ``put_object`` turns unknown headers into ``x-amz-meta-*`` user
        metadata, so the single-PUT call underneath it is used to send the header as is. A
        server that ignores the header (older MinIO, some S3 clones) would overwrite instead:
        the key is checked first and read back after, which narrows that race but cannot close
        it; on such a server two writers starting within the same instant may both succeed.
        """
        name, uri = self.object_name(key), self.uri(key)
        if self.exists(key):
            return False
        headers: DictType = {"If-None-Match": "*", "Content-Type": "application/json"}
        try:
            self._call(
                "conditional upload to",
                uri,
                lambda: self._client._put_object(self.bucket, name, data, headers=headers),
            )
        except ArtifactError as exc:
            cause = exc.__cause__
            codes = {"PreconditionFailed", "ConditionalRequestConflict"}
            if not (isinstance(cause, S3Error) and cause.code in codes):
                raise
            # A retried PUT whose first attempt landed is refused too: it is ours if the
            # bytes there are the ones this call sent.
            try:
                return self.get_bytes(key) == data
            except ArtifactNotFound:
                return False
        try:
            return self.get_bytes(key) == data
        except ArtifactNotFound:
            return False

    def _read_all(self, name: str) -> bytes:
        """One GET of a whole object."""
        response = self._client.get_object(self.bucket, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def get_bytes(self, key: str) -> bytes:
        name, uri = self.object_name(key), self.uri(key)
        return self._call("download of", uri, lambda: self._read_all(name))

    def _stat(self, key: str) -> tuple[int, str | None] | None:
        """(size, etag) of an object, None if absent."""
        name, uri = self.object_name(key), self.uri(key)
        try:
            info = self._call("lookup of", uri, lambda: self._client.stat_object(self.bucket, name))
        except ArtifactNotFound:
            # A HEAD gets a bare 404 for a missing bucket too; tell the two apart.
            self._require_bucket()
            return None
        return int(info.size or 0), info.etag

    def exists(self, key: str) -> bool:
        return self._stat(key) is not None

    def _fetch_into(self, name: str, part: Path, size: int, etag: str | None) -> None:
        """Append the rest of the object to part, from the bytes it already holds."""
        offset = part.stat().st_size
        if offset < size:
            # If-Match: every range must come from the version whose size was looked up.
            headers: DictType | None = {"If-Match": f'"{etag}"'} if etag else None
            response = self._client.get_object(
                self.bucket, name, offset=offset, request_headers=headers
            )
            try:
                with part.open("ab") as fh:
                    for chunk in _chunks(response):
                        fh.write(chunk)
            finally:
                response.close()
                response.release_conn()
        got = part.stat().st_size
        if got < size:
            raise _IncompleteDownload(f"connection ended after {got} of {size} bytes")
        if got > size:
            raise ArtifactError(f"{got} bytes received for a {size}-byte object")

    def get_file(self, key: str, dest: Path) -> Path:
        name, uri = self.object_name(key), self.uri(key)
        dest = Path(dest)
        stat = self._stat(key)
        if stat is None:
            raise ArtifactNotFound(f"artifact not found: {uri}")
        size, etag = stat
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.close(fd)
        part = Path(tmp)
        try:
            try:
                self._call("download of", uri, lambda: self._fetch_into(name, part, size, etag))
            except ArtifactError as exc:
                cause = exc.__cause__
                if isinstance(cause, S3Error) and cause.code == "PreconditionFailed":
                    raise ArtifactError(
                        f"{uri} was replaced while it was being downloaded; download it again"
                    ) from cause
                raise
            with part.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return dest

    def _list_names(self, base: str) -> list[str]:
        """Every object name starting with base (all pages of the listing)."""
        objects = self._client.list_objects(self.bucket, prefix=base or None, recursive=True)
        return [str(obj.object_name) for obj in objects]

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.object_name(prefix) if prefix else self.prefix
        uri = self.uri(prefix) if prefix else self._bucket_uri()
        names = self._call("listing of", uri, lambda: self._list_names(base))
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = sorted(
            name[strip:]
            for name in names
            # A listing by prefix "a" also returns "ab/..."; keep "a" itself and "a/...".
            if not name.endswith("/") and (not base or name == base or name.startswith(base + "/"))
        )
        return iter(keys)

    def delete(self, key: str) -> None:
        name, uri = self.object_name(key), self.uri(key)
        self._call("delete of", uri, lambda: self._client.remove_object(self.bucket, name))
