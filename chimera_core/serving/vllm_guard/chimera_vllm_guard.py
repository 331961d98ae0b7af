"""An ASGI middleware for the vLLM server: every route but health and metrics needs the key.

vLLM's own ``--api-key`` check guards only paths under ``/v1`` and a few others; routes it adds
elsewhere (SageMaker's ``/adapters``, which loads and unloads LoRA adapters, ``/invocations``,
``/tokenize``, ``/scale_elastic_ep``) would answer anyone on the host. This file is loaded inside
the vLLM process (``--middleware chimera_vllm_guard.RequireKey``), which has vLLM's environment,
not Chimera's: it imports nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Liveness and Prometheus metrics stay open: probes and scrapers carry no key, and neither
# route changes the server or reveals more than model names and counters.
OPEN_PATHS = frozenset({"/health", "/ping", "/metrics"})


class RequireKey:
    """Answer 401 to any request without ``Authorization: Bearer $VLLM_API_KEY``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        key = os.environ.get("VLLM_API_KEY", "")
        if not key:
            raise RuntimeError("chimera_vllm_guard needs VLLM_API_KEY in the server environment")
        self.digest = hashlib.sha256(key.encode()).digest()

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers") or []:
            if name.lower() == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                given = hashlib.sha256(token.encode()).digest()
                return scheme.lower() == "bearer" and hmac.compare_digest(given, self.digest)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if path in OPEN_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "Unauthorized"}).encode()
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
