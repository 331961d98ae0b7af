"""A stand-in for vLLM's OpenAI server process, for the fast tier: same argv, same key rules.

Run as ``python -m tests.serving.fake_vllm -m vllm.entrypoints.openai.api_server --model DIR
--served-model-name NAME --host H --port P [--lora-modules n=path ...] ...`` (the command
Chimera builds; unknown flags are ignored). It answers /health and /metrics openly and every
other route only with ``Authorization: Bearer $VLLM_API_KEY``: /v1/models (base + adapters),
/v1/chat/completions (the canned replies of ``tests.lab.fake_openai``, model name checked),
/v1/load_lora_adapter. ``FAKE_VLLM_DELAY_S`` slows each chat reply.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.lab.fake_openai import FakeOpenAI

OPEN = {"/health", "/metrics"}


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", dest="module")
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lora-modules", nargs="*", default=[])
    args, _unknown = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    args = _args(argv)
    key = os.environ["VLLM_API_KEY"]
    delay = float(os.environ.get("FAKE_VLLM_DELAY_S", "0"))
    models = {args.served_model_name: args.model}
    for module in args.lora_modules:
        name, _, path = module.partition("=")
        models[name] = path
    fake = FakeOpenAI()
    counters = {"queries": 0, "hits": 0}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            return self.path in OPEN or self.headers.get("Authorization") == f"Bearer {key}"

        def do_GET(self) -> None:
            if not self._authorized():
                self._send(401, {"error": "Unauthorized"})
            elif self.path == "/health":
                self._send(200, b"", "text/plain")
            elif self.path == "/metrics":
                text = (
                    f'vllm:prefix_cache_queries_total{{engine="0"}} {counters["queries"]}.0\n'
                    f'vllm:prefix_cache_hits_total{{engine="0"}} {counters["hits"]}.0\n'
                )
                self._send(200, text.encode(), "text/plain")
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": m} for m in models]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            if not self._authorized():
                self._send(401, {"error": "Unauthorized"})
            elif self.path == "/v1/load_lora_adapter":
                if not Path(body["lora_path"]).is_dir():
                    self._send(400, {"error": f"no adapter at {body['lora_path']}"})
                    return
                models[body["lora_name"]] = body["lora_path"]
                self._send(200, b"Success", "text/plain")
            elif self.path == "/v1/chat/completions":
                if body.get("model") not in models:
                    self._send(404, {"error": {"message": f"model {body.get('model')} unknown"}})
                    return
                time.sleep(delay)
                counters["queries"] += 100
                counters["hits"] += 60
                self._send(200, fake.reply(body))
            else:
                self._send(404, {"error": "not found"})

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"fake vLLM on {args.host}:{args.port} serving {sorted(models)}", flush=True)
    server.serve_forever(0.05)


if __name__ == "__main__":
    main()
