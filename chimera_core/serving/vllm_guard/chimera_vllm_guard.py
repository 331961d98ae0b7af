"""An ASGI middleware for the vLLM server: the key on every route, bounded bodies, no local paths.

vLLM's own ``--api-key`` check guards only paths under ``/v1`` and a few others; routes it adds
elsewhere (SageMaker's ``/adapters``, which loads and unloads LoRA adapters, ``/invocations``,
``/tokenize``, ``/scale_elastic_ep``) would answer anyone on the host. So every route but health
and metrics needs ``Authorization: Bearer $VLLM_API_KEY`` here (401 otherwise).

Past the key:

- A request body over ``MAX_BODY_BYTES`` gets 413 and a JSON body nested deeper than
  ``MAX_JSON_DEPTH`` arrays/objects gets 400, before vLLM reads it (Python's JSON parser recurses:
  100,000 levels were a 500 and two tracebacks). The depth is counted by a streaming scan of the
  bytes that skips strings (escapes included); an accepted body is replayed to vLLM unchanged,
  chunk by chunk.
- ``/v1/models`` lists no filesystem path: vLLM's ``root`` (the model directory, the adapter
  directory) becomes the served name, and any other absolute path in a card is replaced too.
- A failed adapter load or unload (``/v1/load_lora_adapter``, ``/v1/unload_lora_adapter``,
  SageMaker's ``/adapters``) answers 400 ``adapter could not be loaded (ref R)`` whatever the
  cause, so the answer does not tell whether a path exists; vLLM's own status and message go to
  the server log (the process's stderr) under ``ref R``, where Chimera, which owns that log,
  reads them back.

This file is loaded inside the vLLM process (``--middleware chimera_vllm_guard.RequireKey``),
which has vLLM's environment, not Chimera's: it imports nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Liveness and Prometheus metrics stay open: probes and scrapers carry no key, and neither
# route changes the server or reveals more than model names and counters.
OPEN_PATHS = frozenset({"/health", "/ping", "/metrics"})

# 8 MiB: the largest context served here (a 128k-token GPU model; the CPU profile has 4k) is
# ~0.5 MB of text, ~3 MB with every character JSON-escaped (\uXXXX), ~1 MB as a list of token
# ids; tool definitions and JSON schemas add kilobytes. So 8 MiB refuses nothing a served
# context can hold, and bounds what one request makes the server buffer and parse.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Tool schemas and response formats nest a dozen levels; Python's parser recurses per level.
MAX_JSON_DEPTH = 64
# Overrides (the server's environment; Chimera's ``serving.env`` sets it).
MAX_BODY_ENV = "CHIMERA_VLLM_MAX_BODY_BYTES"
MAX_DEPTH_ENV = "CHIMERA_VLLM_MAX_JSON_DEPTH"
# Bodies vLLM never parses as JSON (audio uploads): only the size cap applies.
NOT_JSON = ("multipart/", "application/x-www-form-urlencoded")

MODELS_PATH = "/v1/models"
LOAD_PATHS = frozenset({"/v1/load_lora_adapter", "/adapters"})
UNLOAD_PATHS = frozenset({"/v1/unload_lora_adapter"})
LOG_PREFIX = "chimera_vllm_guard:"
REF_PATTERN = re.compile(r"\(ref ([0-9a-f]{8,})\)")  # Chimera's client finds the log line by it

_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")


def _log(line: str) -> None:
    """One line in the server log (vLLM's stderr goes to Chimera's log file)."""
    sys.stderr.write(f"{LOG_PREFIX} {line}\n")
    sys.stderr.flush()


def _limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise RuntimeError(f"chimera_vllm_guard: {name}={raw!r} is not a positive integer")
    return value


class JsonDepth:
    """The nesting depth of a JSON text fed in chunks: brackets inside strings do not count.

    A byte scan, not a parser: outside strings ``[``/``{`` open and ``]``/``}`` close; inside, a
    backslash escapes the next byte (also across a chunk boundary) and ``"`` ends the string.
    Invalid JSON is vLLM's to refuse; this only has to never under-count a valid text.
    """

    _OUTSIDE = re.compile(rb'["\[\]{}]')
    _INSIDE = re.compile(rb'["\\]')

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, chunk: bytes) -> bool:
        """Scan the next chunk; False once the depth went past the limit."""
        i, end = 0, len(chunk)
        if self.escaped and end:
            i, self.escaped = 1, False
        while i < end:
            if self.in_string:
                match = self._INSIDE.search(chunk, i)
                if match is None:
                    return True
                i = match.end()
                if chunk[match.start()] == 0x5C:  # a backslash: skip what it escapes
                    if i < end:
                        i += 1
                    else:
                        self.escaped = True
                else:
                    self.in_string = False
                continue
            match = self._OUTSIDE.search(chunk, i)
            if match is None:
                return True
            i = match.end()
            byte = chunk[match.start()]
            if byte == 0x22:  # "
                self.in_string = True
            elif byte in (0x5B, 0x7B):  # [ {
                self.depth += 1
                if self.depth > self.limit:
                    return False
            elif self.depth:
                self.depth -= 1
        return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _error(status: int, message: str, err_type: str) -> tuple[int, bytes]:
    """vLLM's (OpenAI's) error shape, so clients show ``message``."""
    body = {"error": {"message": message, "type": err_type, "param": None, "code": status}}
    return status, json.dumps(body).encode()


Rewriter = Callable[[int, bytes], tuple[int, bytes] | None]


async def _respond(send: Send, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    kept = [(k, v) for k, v in headers or [] if k.lower() not in (b"content-length",)]
    if not any(k.lower() == b"content-type" for k, _ in kept):
        kept.append((b"content-type", b"application/json"))
    kept.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body})


def _is_local_path(value: str) -> bool:
    return value.startswith(("/", "\\", "~", "file:")) or bool(_WINDOWS_PATH.match(value))


def _scrub(value: Any, replacement: str) -> Any:
    """``value`` with every string that is an absolute filesystem path replaced."""
    if isinstance(value, str):
        return replacement if _is_local_path(value) else value
    if isinstance(value, list):
        return [_scrub(item, replacement) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, replacement) for key, item in value.items()}
    return value


def scrub_model_list(body: bytes) -> bytes:
    """vLLM's ``/v1/models`` answer without local paths: ``root`` is the served name."""
    listing = json.loads(body)
    cards = [c for c in listing.get("data") or [] if isinstance(c, dict)]
    names = [c.get("id") for c in cards if not c.get("parent")] + ["model"]
    base: str = next(n for n in names if isinstance(n, str) and not _is_local_path(n))
    for card in cards:
        card_id = card.get("id")
        name = card_id if isinstance(card_id, str) and not _is_local_path(card_id) else base
        if "root" in card:
            card["root"] = name
        if isinstance(card.get("parent"), str) and _is_local_path(card["parent"]):
            card["parent"] = base
        for key in list(card):
            if key != "id":
                card[key] = _scrub(card[key], name)
    # The ids stay as they are: clients call the models by them (Chimera always names them).
    return json.dumps(
        {k: v if k == "data" else _scrub(v, base) for k, v in listing.items()}
    ).encode()


class _Rewrite:
    """A ``send`` that holds back one response and sends what ``rewrite`` makes of it.

    ``rewrite(status, body)`` returns None to send the response unchanged, or (status, body).
    """

    def __init__(self, send: Send, rewrite: Rewriter) -> None:
        self.send = send
        self.rewrite = rewrite
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.passing = False

    async def __call__(self, message: Message) -> None:
        if self.passing:
            await self.send(message)
        elif message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                await self._flush()
        else:  # something this cannot rewrite (trailers, a pathsend): send it all as it was
            await self._release()
            await self.send(message)

    async def _flush(self) -> None:
        assert self.start is not None
        body = b"".join(self.chunks)
        new = self.rewrite(int(self.start["status"]), body)
        if new is None:
            self.chunks = [body]
            await self._release()
            return
        self.passing = True
        await _respond(self.send, new[0], new[1], list(self.start.get("headers") or []))

    async def _release(self) -> None:
        self.passing = True
        if self.start is not None:
            await self.send(self.start)
        for index, chunk in enumerate(self.chunks):
            more = index < len(self.chunks) - 1
            await self.send({"type": "http.response.body", "body": chunk, "more_body": more})


def _models_rewrite(status: int, body: bytes) -> tuple[int, bytes] | None:
    if status != 200:
        return None
    try:
        return 200, scrub_model_list(body)
    except (ValueError, AttributeError, TypeError) as exc:  # fail closed: no raw listing
        _log(f"GET {MODELS_PATH}: could not read vLLM's model list ({exc}); answered 500")
        return _error(500, "the model list could not be read", "InternalServerError")


def _adapter_rewrite(action: str, method: str, path: str) -> Rewriter:
    def rewrite(status: int, body: bytes) -> tuple[int, bytes] | None:
        if status < 400:
            return None
        ref = secrets.token_hex(4)
        said = body[:2000].decode("utf-8", "replace").replace("\n", " ")
        _log(f"ref {ref}: {method} {path}: vLLM answered HTTP {status}: {said}")
        return _error(400, f"adapter could not be {action} (ref {ref})", "BadRequestError")

    return rewrite


class RequireKey:
    """The guard (see the module): key, body limits, path-free model list and adapter errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        key = os.environ.get("VLLM_API_KEY", "")
        if not key:
            raise RuntimeError("chimera_vllm_guard needs VLLM_API_KEY in the server environment")
        self.digest = hashlib.sha256(key.encode()).digest()
        self.max_body = _limit(MAX_BODY_ENV, MAX_BODY_BYTES)
        self.max_depth = _limit(MAX_DEPTH_ENV, MAX_JSON_DEPTH)

    def _authorized(self, scope: Scope) -> bool:
        value = _header(scope, b"authorization")
        if value is None:
            return False
        scheme, _, token = value.partition(" ")
        given = hashlib.sha256(token.encode("latin-1")).digest()
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self.digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        method = scope.get("method", "")
        if not (method == "OPTIONS" or path in OPEN_PATHS or self._authorized(scope)):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _respond(send, 401, json.dumps({"error": "Unauthorized"}).encode())
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        replay = await self._read_body(scope, receive, send, f"{method} {path}")
        if replay is None:
            return
        if method == "GET" and path == MODELS_PATH:
            send = _Rewrite(send, _models_rewrite)
        elif path in LOAD_PATHS and method == "POST":
            send = _Rewrite(send, _adapter_rewrite("loaded", method, path))
        elif path in UNLOAD_PATHS or (path.startswith("/adapters/") and method == "DELETE"):
            send = _Rewrite(send, _adapter_rewrite("unloaded", method, path))
        await self.app(scope, replay, send)

    async def _read_body(
        self, scope: Scope, receive: Receive, send: Send, what: str
    ) -> Receive | None:
        """Read and check the whole body; a ``receive`` that replays it, or None if answered."""
        refused: tuple[int, str, str] | None = None  # status, message, type
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            refused = self._too_large()
        content_type = (_header(scope, b"content-type") or "").strip().lower()
        depth = None if content_type.startswith(NOT_JSON) else JsonDepth(self.max_depth)
        messages: list[Message] = []
        size = 0
        while refused is None:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client left: nobody to answer
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                refused = self._too_large()
            elif depth is not None and not depth.feed(chunk):
                deep = f"the request body nests JSON deeper than {self.max_depth} levels"
                refused = (400, deep, "BadRequestError")
            elif not message.get("more_body", False):
                break
        if refused is not None:
            status, text, err_type = refused
            _log(f"refused {what} with HTTP {status}: {text}")
            # The rest of the body is left unread: the connection cannot be reused.
            await _respond(send, *_error(status, text, err_type), [(b"connection", b"close")])
            return None
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        return replay

    def _too_large(self) -> tuple[int, str, str]:
        return 413, f"the request body is over {self.max_body} bytes", "RequestEntityTooLarge"
