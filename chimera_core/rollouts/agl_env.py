"""Process setup that must happen before Agent Lightning (LiteLLM, AgentOps) is imported."""

from __future__ import annotations

import logging
import os

from chimera_core.logs import debug_enabled

_DONE = False


def prepare_agl_environment() -> None:
    """Offline-safe defaults, quiet third-party logs (not with CHIMERA_DEBUG), the FastAPI fix."""
    global _DONE
    if _DONE:
        return
    # LiteLLM fetches a cost map from the internet at import unless told to use its local copy.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # AgentOps writes ./agentops.log into the working directory by default.
    os.environ.setdefault("AGENTOPS_LOGGING_TO_FILE", "False")
    # The proxy is bound to 127.0.0.1 and never exposed; no master key needed there.
    os.environ.setdefault("LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY", "true")
    os.environ.setdefault("LITELLM_DONT_SHOW_FEEDBACK_BOX", "true")
    _disable_fastapi_native_telemetry()
    if not debug_enabled():
        _quiet_third_party_logs()
    _DONE = True


def _quiet_third_party_logs() -> None:
    # What the proxy, AgentOps and OpenTelemetry print is either about settings made on purpose
    # above (no master key, no admin UI; openai 2 has no beta streaming module for AgentOps to
    # wrap, the traced calls are instrumented all the same), or, when a model call fails, the
    # same failure again per layer and attempt (tracebacks, "attribute on ended span"): the
    # rollout's record keeps that failure with its reason and the stage reports it.
    os.environ.setdefault("AGENTOPS_LOG_LEVEL", "CRITICAL")
    _hide_litellm_banner()
    for noisy in ("LiteLLM", "litellm", "httpx", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for quiet in ("LiteLLM Proxy", "LiteLLM Router", "agentops", "opentelemetry",
                  "agentlightning.llm_proxy", "agentlightning.utils.server_launcher"):  # fmt: skip
        logging.getLogger(quiet).setLevel(logging.CRITICAL)


def _hide_litellm_banner() -> None:
    # The proxy prints LiteLLM's ASCII-art banner at each start; the server is an internal part.
    try:
        from litellm.proxy.common_utils import banner
    except ImportError:
        return
    banner.show_banner = lambda: None


def _disable_fastapi_native_telemetry() -> None:
    # FastAPI's native OpenTelemetry switches on once LiteLLM installs a global tracer provider;
    # each request to the in-process store server then exports spans with a blocking POST to that
    # same server from its own thread: a 10 s self-deadlock per proxied call (measured).
    try:
        import fastapi.telemetry._asgi as native
    except ImportError:  # FastAPI without native telemetry: nothing to disable
        return
    native.NativeTelemetry.enabled = lambda self: False  # type: ignore[method-assign]
