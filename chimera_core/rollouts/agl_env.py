"""Process setup that must happen before Agent Lightning (LiteLLM, AgentOps) is imported."""

from __future__ import annotations

import logging
import os

_DONE = False


def prepare_agl_environment() -> None:
    """Offline-safe defaults and the FastAPI telemetry fix; idempotent."""
    global _DONE
    if _DONE:
        return
    # LiteLLM fetches a cost map from the internet at import unless told to use its local copy.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # AgentOps writes ./agentops.log into the working directory by default.
    os.environ.setdefault("AGENTOPS_LOGGING_TO_FILE", "False")
    os.environ.setdefault("AGENTOPS_LOG_LEVEL", "WARNING")
    # The proxy is bound to 127.0.0.1 and never exposed; no master key needed there.
    os.environ.setdefault("LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY", "true")
    _disable_fastapi_native_telemetry()
    for noisy in ("LiteLLM", "litellm", "LiteLLM Proxy", "LiteLLM Router", "httpx", "agentops",
                  "uvicorn.access", "uvicorn.error", "opentelemetry"):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _DONE = True


def _disable_fastapi_native_telemetry() -> None:
    # FastAPI's native OpenTelemetry switches on once LiteLLM installs a global tracer provider;
    # each request to the in-process store server then exports spans with a blocking POST to that
    # same server from its own thread: a 10 s self-deadlock per proxied call (measured).
    try:
        import fastapi.telemetry._asgi as native
    except ImportError:  # FastAPI without native telemetry: nothing to disable
        return
    native.NativeTelemetry.enabled = lambda self: False  # type: ignore[method-assign]
