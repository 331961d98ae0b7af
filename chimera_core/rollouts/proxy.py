"""The LLM proxy's routes: one per served model name, to the embedded server or vLLM."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chimera_core.config.models import ChimeraConfig


def proxy_model_list(config: ChimeraConfig, base_urls: Mapping[str, str]) -> list[dict[str, Any]]:
    """LiteLLM model list: each alias's served name routed as ``hosted_vllm/`` (token ids kept)."""
    routes: dict[str, dict[str, Any]] = {}
    for alias, endpoint in config.models.items():
        url = base_urls.get(alias) or endpoint.base_url
        if url is None or endpoint.served_model in routes:
            continue
        routes[endpoint.served_model] = {
            "model_name": endpoint.served_model,
            "litellm_params": {
                "model": f"hosted_vllm/{endpoint.served_model}",
                "api_base": url,
                "api_key": endpoint.api_key.get_secret_value(),
                "timeout": endpoint.timeout_s,
            },
        }
    return list(routes.values())
