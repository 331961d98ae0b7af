"""A tiny OpenAI-compatible chat server for tests and benchmarks: canned JSON per role, recorded.

A request with a ``response_format`` JSON schema and no role name (the LLM judge) gets 0.5 for
every key of the schema.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.lab.scripted import GOOD

UNKNOWN = '{"note": "unknown role"}'


def _schema_keys(body: dict[str, Any]) -> list[str]:
    """The property names of a ``response_format`` JSON schema, if the request has one."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    return list(schema.get("properties") or {})


class FakeOpenAI:
    """Answers /v1/chat/completions with the role's canned reply (role = the user message name)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        names = [m.get("name") for m in body.get("messages", []) if m.get("name")]
        if names:
            content = GOOD.get(names[-1], UNKNOWN)
        elif keys := _schema_keys(body):  # e.g. the LLM judge: every score 0.5
            content = json.dumps(dict.fromkeys(keys, 0.5))
        else:
            content = UNKNOWN
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "?"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }


@contextmanager
def fake_openai_server(delay_s: float = 0.0) -> Iterator[FakeOpenAI]:
    """Serve a FakeOpenAI on a free local port for the block; each reply takes ``delay_s``."""
    fake = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with fake.lock:
                fake.requests.append(body)
            time.sleep(delay_s)
            data = json.dumps(fake.reply(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
