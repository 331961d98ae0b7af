"""Hostile and broken requests to the model server: the guard in front of vLLM, as an ASGI app.

The guard (``chimera_vllm_guard.RequireKey``) runs inside the vLLM process; here it wraps a small
Starlette app that answers like vLLM does (the same error shapes and messages, the same
``/v1/models`` cards with absolute ``root`` paths), driven through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from chimera_core.config.models import ServingConfig
from chimera_core.errors import ChimeraError
from chimera_core.serving.vllm_server import GUARD_DIR, ServerSpec, VLLMServer

KEY = "k" * 43
AUTH = {"Authorization": f"Bearer {KEY}"}


def _load_guard() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "chimera_vllm_guard", GUARD_DIR / "chimera_vllm_guard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guard = _load_guard()


def _vllm_error(status: int, message: str, err_type: str) -> JSONResponse:
    error = {"message": message, "type": err_type, "param": None, "code": status}
    return JSONResponse({"error": error}, status_code=status)


class FakeVLLM:
    """What vLLM answers on the routes the guard treats specially; records what reached it."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.adapters: dict[str, str] = {}
        self.received: list[dict[str, Any]] = []  # the raw ASGI messages of each request
        self.calls = 0
        self.app = Starlette(
            routes=[
                Route("/health", lambda _: Response(status_code=200)),
                Route("/v1/models", self.models),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/load_lora_adapter", self.load, methods=["POST"]),
                Route("/adapters", self.load, methods=["POST"]),
                Route("/v1/unload_lora_adapter", self.unload, methods=["POST"]),
                Route("/adapters/{name}", self.unload, methods=["DELETE"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1

        async def recording() -> Any:
            message = await receive()
            self.received.append(message)
            return message

        await self.app(scope, recording, send)

    async def models(self, _: Request) -> JSONResponse:
        base = {"id": "smol-a", "object": "model", "created": 1, "owned_by": "vllm"}
        cards = [
            {**base, "root": str(self.models_dir / "smol"), "parent": None, "max_model_len": 4096}
        ]
        for name, path in self.adapters.items():
            cards.append({**base, "id": name, "root": path, "parent": "smol-a"})
        for card in cards:
            card["permission"] = [{"id": "modelperm-1", "object": "model_permission"}]
        return JSONResponse({"object": "list", "data": cards})

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.body()
        value = json.loads(body)  # vLLM parses it too: a 100,000-deep body raises here
        return JSONResponse({"sha256": hashlib.sha256(body).hexdigest(), "keys": sorted(value)})

    async def load(self, request: Request) -> Response:
        body = await request.json()
        name = body.get("lora_name") or body.get("name")
        path = Path(body.get("lora_path") or body.get("src"))
        if not path.exists():  # vLLM: LoRAAdapterNotFoundError -> 404
            message = f"Loading lora {name} failed: No adapter found for {path}"
            return _vllm_error(404, message, "NotFoundError")
        if not (path / "adapter_config.json").is_file():  # vLLM: add_lora raised -> 500
            message = f"[Errno 2] No such file or directory: '{path / 'adapter_config.json'}'"
            return _vllm_error(500, message, "InternalServerError")
        self.adapters[name] = str(path)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(self, request: Request) -> Response:
        name = request.path_params.get("name") or (await request.json())["lora_name"]
        if self.adapters.pop(name, None) is None:
            message = f"The lora adapter '{name}' cannot be found."
            return _vllm_error(404, message, "NotFoundError")
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")


@pytest.fixture()
def fake(tmp_path: Path) -> FakeVLLM:
    return FakeVLLM(tmp_path / "models")


@pytest.fixture()
def guarded(fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    return guard.RequireKey(fake)


def _call(app: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request through the ASGI app; app exceptions propagate (raise_app_exceptions)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vllm") as client:
            response = await client.request(method, path, **kw)
            await response.aread()
            return response

    return asyncio.run(go())


def _chunks(*parts: bytes) -> Any:
    async def stream() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    return stream()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


# --- the key (item 3): every route but health and metrics ---------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/load_lora_adapter", {"lora_name": "chimera-judge", "lora_path": "/etc"}),
        ("POST", "/v1/unload_lora_adapter", {"lora_name": "chimera-judge"}),
        ("POST", "/adapters", {"name": "chimera-judge", "src": "/etc"}),
        ("DELETE", "/adapters/chimera-judge", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", {"model": "smol-a", "messages": []}),
    ],
)
def test_routes_that_load_unload_or_list_models_refuse_without_the_key(
    guarded: Any, fake: FakeVLLM, method: str, path: str, body: Any
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        response = _call(guarded, method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json() == {"error": "Unauthorized"}
    assert fake.calls == 0  # vLLM never saw them
    assert _call(guarded, "GET", "/health").status_code == 200


def test_an_unauthorized_deep_body_is_refused_before_it_is_read(
    guarded: Any, fake: FakeVLLM
) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    assert _call(guarded, "POST", "/v1/chat/completions", content=body).status_code == 401
    assert fake.calls == 0


# --- request bodies (item 18) ----------------------------------------------------------------


def test_a_body_nested_100000_deep_gets_400_without_an_exception(
    guarded: Any, fake: FakeVLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"model": "smol-a", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(RecursionError):  # what vLLM's parser does with it
        json.loads(body)
    response = _call(guarded, "POST", "/v1/chat/completions", content=body, headers=AUTH)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "the request body nests JSON deeper than 64 levels"
    assert (error["type"], error["code"]) == ("BadRequestError", 400)
    assert fake.calls == 0
    log = capsys.readouterr().err
    assert log.count("\n") == 1 and "Traceback" not in log
    assert "refused POST /v1/chat/completions with HTTP 400" in log


def test_depth_64_passes_and_65_is_refused(guarded: Any, fake: FakeVLLM) -> None:
    def nested(depth: int) -> bytes:
        return b'{"model": "m", "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    ok = _call(guarded, "POST", "/v1/chat/completions", content=nested(64), headers=AUTH)
    assert ok.status_code == 200, ok.text
    deep = _call(guarded, "POST", "/v1/chat/completions", content=nested(65), headers=AUTH)
    assert deep.status_code == 400
    assert fake.calls == 1


def test_brackets_and_escapes_inside_strings_do_not_count(guarded: Any, fake: FakeVLLM) -> None:
    content = '\\"' + "[" * 5000 + '"\\' + "{" * 5000 + '\\\\"]' + "\u00e9\U0001f600"
    body = json.dumps({"model": "smol-a", "messages": [{"role": "user", "content": content}]})
    for raw in (body.encode(), json.dumps(json.loads(body), ensure_ascii=False).encode()):
        response = _call(guarded, "POST", "/v1/chat/completions", content=raw, headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_chunked_body_is_replayed_to_vllm_byte_for_byte(guarded: Any, fake: FakeVLLM) -> None:
    body = json.dumps(
        {"model": "smol-a", "messages": [{"role": "user", "content": 'a "[quoted]" \\ {x}'}]}
    ).encode()
    cut = body.index(b"\\")  # a chunk ends on a backslash, the next starts with what it escapes
    parts = (body[:7], body[7 : cut + 1], body[cut + 1 : cut + 2], b"", body[cut + 2 :])
    response = _call(guarded, "POST", "/v1/chat/completions", content=_chunks(*parts), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
    bodies = [m.get("body", b"") for m in fake.received if m["type"] == "http.request"]
    assert bodies == [*parts, b""]  # the same chunks, in order, then the transport's last one
    assert [m.get("more_body", False) for m in fake.received][-1] is False


def test_the_depth_scan_carries_strings_and_escapes_across_chunks() -> None:
    # Inside the string: an escaped quote, then 100 brackets; split after every byte.
    body = b'["\\"' + b"[" * 100 + b'"]'
    scan = guard.JsonDepth(2)
    assert all(scan.feed(body[i : i + 1]) for i in range(len(body)))
    assert (scan.depth, scan.in_string) == (0, False)
    whole = guard.JsonDepth(2)
    assert whole.feed(body) and whole.depth == 0
    # A string that ends (\\ then ") before the brackets: those count.
    scan = guard.JsonDepth(2)
    assert not all(scan.feed(b) for b in (b'["\\', b'\\"', b"[[[", b"]]]]"))


def test_an_over_large_body_gets_413(
    guarded: Any, fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert guard.MAX_BODY_BYTES == 8 * 1024 * 1024
    big = b'{"model": "m", "x": "' + b"a" * guard.MAX_BODY_BYTES + b'"}'
    response = _call(guarded, "POST", "/v1/chat/completions", content=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "the request body is over 8388608 bytes"
    # Without a Content-Length (chunked), counted as it arrives.
    monkeypatch.setenv(guard.MAX_BODY_ENV, "1000")
    small_cap = guard.RequireKey(fake)
    parts = (b'{"x": "', b"a" * 600, b"a" * 600, b'"}')
    streamed = _call(
        small_cap, "POST", "/v1/chat/completions", content=_chunks(*parts), headers=AUTH
    )
    assert streamed.status_code == 413
    assert fake.calls == 0
    # Just under the default cap passes.
    fits = b'{"model": "m", "x": "' + b"a" * (guard.MAX_BODY_BYTES - 100) + b'"}'
    response = _call(guarded, "POST", "/v1/chat/completions", content=fits, headers=AUTH)
    assert response.status_code == 200


def test_a_bad_limit_in_the_environment_stops_the_server(
    monkeypatch: pytest.MonkeyPatch, fake: FakeVLLM
) -> None:
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    monkeypatch.setenv(guard.MAX_DEPTH_ENV, "deep")
    with pytest.raises(RuntimeError, match="CHIMERA_VLLM_MAX_JSON_DEPTH='deep'"):
        guard.RequireKey(fake)


# --- no local paths (item 3) -------------------------------------------------------------------


def test_the_model_list_shows_no_local_path(guarded: Any, fake: FakeVLLM, tmp_path: Path) -> None:
    adapter = tmp_path / "runs" / "judge-sft-r1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    load = {"lora_name": "chimera-judge", "lora_path": str(adapter)}
    assert _call(guarded, "POST", "/v1/load_lora_adapter", json=load, headers=AUTH).is_success
    response = _call(guarded, "GET", "/v1/models", headers=AUTH)
    assert response.status_code == 200
    assert str(tmp_path) not in response.text
    assert int(response.headers["content-length"]) == len(response.content)
    listing = response.json()
    assert not [s for s in _strings(listing) if s.startswith("/")]
    cards = {card["id"]: card for card in listing["data"]}
    assert cards["smol-a"]["root"] == "smol-a" and cards["smol-a"]["parent"] is None
    assert cards["chimera-judge"]["root"] == "chimera-judge"
    assert cards["chimera-judge"]["parent"] == "smol-a"
    assert cards["smol-a"]["max_model_len"] == 4096  # the rest as vLLM said


def test_a_failed_adapter_load_does_not_tell_whether_the_path_exists(
    guarded: Any, fake: FakeVLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = []
    for path in (tmp_path / "no-such-dir", tmp_path):  # vLLM: 404 vs 500, each naming the path
        for route, body in (
            ("/v1/load_lora_adapter", {"lora_name": "chimera-judge", "lora_path": str(path)}),
            ("/adapters", {"name": "chimera-judge", "src": str(path)}),
        ):
            response = _call(guarded, "POST", route, json=body, headers=AUTH)
            assert str(tmp_path) not in response.text
            error = response.json()["error"]
            assert error["message"].startswith("adapter could not be loaded (ref ")
            answers.append((response.status_code, error["type"], error["message"][:28]))
    assert set(answers) == {(400, "BadRequestError", "adapter could not be loaded ")}
    # vLLM's own words, path included, are in the server log under each ref.
    log = capsys.readouterr().err
    assert "vLLM answered HTTP 404" in log and "No adapter found for" in log
    assert "vLLM answered HTTP 500" in log and "adapter_config.json" in log
    unload = _call(guarded, "DELETE", "/adapters/nothing", headers=AUTH)
    assert unload.status_code == 400
    assert unload.json()["error"]["message"].startswith("adapter could not be unloaded (ref ")


def test_chimeras_client_reports_vllms_reason_from_the_server_log(
    guarded: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-adapter"
    body = {"lora_name": "junior-sft-r1", "lora_path": str(missing)}
    answer = _call(guarded, "POST", "/v1/load_lora_adapter", json=body, headers=AUTH)
    server = VLLMServer(
        ServerSpec(tmp_path / "base", "smol-a"), ServingConfig(port=8000), log_dir=tmp_path
    )
    server.log_path.write_text("INFO some vLLM line\n" + capsys.readouterr().err)

    def post(*_: Any, **__: Any) -> httpx.Response:
        return answer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx, "post", post)
        with pytest.raises(ChimeraError) as caught:
            server.load_adapter("junior-sft-r1", missing)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert f"refused adapter 'junior-sft-r1' from {missing}" in message
    assert "vLLM answered HTTP 404: " in message and f"No adapter found for {missing}" in message
