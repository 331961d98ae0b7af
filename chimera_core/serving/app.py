"""The FastAPI application: OpenAI chat completions, model listing, health, admin reloads."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from chimera_core.config.models import EmbeddedServerConfig
from chimera_core.errors import ChimeraError
from chimera_core.serving.bridge import Generation, sse_stream
from chimera_core.serving.chat import plan_request
from chimera_core.serving.engine import EngineClosed
from chimera_core.serving.middleware import BodyLimit
from chimera_core.serving.pool import LoadedModel, ModelPool
from chimera_core.serving.protocol import (
    ApiError,
    ChatCompletion,
    ChatCompletionRequest,
    LoadModelRequest,
    completion_id,
    error_body,
    now,
)

log = logging.getLogger("chimera.serving")


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    parts = [f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in errors]
    param = ".".join(str(x) for x in errors[0]["loc"]) if errors and errors[0]["loc"] else None
    return "; ".join(parts), param


async def _parse(request: Request, model: type[Any]) -> Any:
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "request body is not valid JSON") from None
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        raise ApiError(400, message, param=param) from None


def create_app(pool: ModelPool, settings: EmbeddedServerConfig) -> FastAPI:
    """The FastAPI application serving the pool's models."""
    app = FastAPI(title="Chimera model server", docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind, exc.param), status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse(
            error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error"),
            status_code=500,
        )

    def lookup(name: str) -> LoadedModel:
        loaded = pool.get(name)
        if loaded is None:
            known = ", ".join(sorted(pool.served())) or "none"
            raise ApiError(404, f"model {name!r} not found; served models: {known}", param="model")
        return loaded

    @app.get("/health")
    async def health() -> dict[str, Any]:
        served = pool.served()
        return {
            "status": "ok",
            "models": sorted(served),
            "load": {name: m.engine.load for name, m in served.items()},
        }

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        data = [
            {
                "id": name,
                "object": "model",
                "created": int(m.loaded_at),
                "owned_by": "chimera",
                "root": str(m.path),
                "max_model_len": m.engine.max_context,
            }
            for name, m in sorted(pool.served().items())
        ]
        return {"object": "list", "data": data}

    @app.get("/admin/models")
    async def admin_list() -> dict[str, Any]:
        return {
            name: {
                "path": str(m.path),
                "dtype": m.dtype,
                "parameters": m.num_parameters,
                "shared_with": sorted(m.names - {name}),
                "load_seconds": round(m.load_seconds, 2),
                "load": m.engine.load,
            }
            for name, m in sorted(pool.served().items())
        }

    @app.post("/admin/models")
    async def admin_load(request: Request) -> dict[str, Any]:
        body: LoadModelRequest = await _parse(request, LoadModelRequest)
        try:
            loaded, previous = await asyncio.to_thread(pool.load, body.name, body.path)
        except (ChimeraError, OSError, ValueError) as exc:  # a bad directory, not a server fault
            raise ApiError(400, f"cannot load {body.path}: {exc}", param="path") from None
        return {
            "name": body.name,
            "path": str(loaded.path),
            "previous": str(previous) if previous else None,
            "shared_with": sorted(loaded.names - {body.name}),
        }

    @app.delete("/admin/models/{name}")
    async def admin_unload(name: str) -> dict[str, Any]:
        lookup(name)  # 404 listing the served models
        path = pool.unload(name)
        return {"name": name, "path": str(path), "unloaded": True}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        req: ChatCompletionRequest = await _parse(request, ChatCompletionRequest)
        loaded = lookup(req.model)
        plan = await asyncio.to_thread(
            plan_request, req, loaded.codec, settings, loaded.engine.max_context
        )
        generation = Generation(loaded, plan, req.stream)
        try:
            generation.submit(loaded)
        except EngineClosed:
            # The name was re-pointed between lookup and submit: use the new model.
            loaded = lookup(req.model)
            plan = plan_request(req, loaded.codec, settings, loaded.engine.max_context)
            generation = Generation(loaded, plan, req.stream)
            generation.submit(loaded)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                sse_stream(generation, req.model, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            async for _state, _out in generation.outputs():
                pass
        finally:
            generation.cancel()
        generation.log_done(req.model)
        response = ChatCompletion(
            id=completion_id(),
            created=now(),
            model=req.model,
            choices=[s.choice() for s in generation.states],
            usage=generation.usage(),
            prompt_token_ids=plan.prompt_ids,
        )
        return JSONResponse(response.model_dump(mode="json"))

    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    return app
