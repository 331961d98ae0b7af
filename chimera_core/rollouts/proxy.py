"""The LLM proxy's routes: each alias's served name to the model that answers it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chimera_core.config.models import ChimeraConfig
from chimera_core.lab.models import Endpoint


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
                "api_key": endpoints[alias].api_key,
                "timeout": model.timeout_s,
            },
        }
        for alias, model in config.models.items()
    ]
