"""The LLM proxy's routes: each alias's served name to the model that answers it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from chimera_core.config.models import ChimeraConfig
from chimera_core.lab.models import Endpoint


def key_variable(alias: str) -> str:
    """The environment variable that holds an alias's endpoint key in the rollout session.

    A digest of the exact alias keeps aliases that differ only in case or punctuation apart.
    """
    digest = hashlib.sha256(alias.encode()).hexdigest()[:8]
    return f"CHIMERA_ENDPOINT_KEY_{re.sub(r'[^A-Z0-9]', '_', alias.upper())}_{digest}"


def key_variables(endpoints: Mapping[str, Endpoint]) -> dict[str, str]:
    """Variable -> key for every endpoint (set in the session process before the proxy)."""
    return {key_variable(alias): e.api_key for alias, e in endpoints.items()}


def proxy_model_list(
    config: ChimeraConfig, endpoints: Mapping[str, Endpoint]
) -> list[dict[str, Any]]:
    """LiteLLM model list: served name -> ``hosted_vllm/<model there>`` (token ids kept).

    The model there is the base model's name or the alias's adapter name, so the proxy is
    where a role is routed to its adapter.
    """
    return [
        {
            "model_name": model.served_model,
            "litellm_params": {
                "model": f"hosted_vllm/{endpoints[alias].model}",
                "api_base": endpoints[alias].base_url,
                "api_key": f"os.environ/{key_variable(alias)}",  # LiteLLM resolves it
                "timeout": model.timeout_s,
            },
        }
        for alias, model in config.models.items()
    ]
