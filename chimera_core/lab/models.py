"""Chat models per role, built from the config's model aliases.

The graph never holds a model: each node asks the rollout's ``ModelProvider`` for its role's
model when it runs, so a rollout can bind the trainable roles to a new checkpoint (or a proxy
route) by passing another provider, without rebuilding the graph.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from chimera_core.config.models import ChimeraConfig, ModelEndpointConfig
from chimera_core.errors import ChimeraError


@dataclass(frozen=True)
class Endpoint:
    """Where an alias's calls go: an OpenAI-compatible base URL, the model name there, a key."""

    base_url: str
    model: str
    api_key: str = field(repr=False)


def configured_endpoint(model: ModelEndpointConfig) -> Endpoint:
    """The endpoint an ``openai`` alias names in the config."""
    if not model.base_url:
        raise ChimeraError(
            f"model {model.served_model!r} is served by Chimera's vLLM server, but no endpoint "
            "is known for it: run it through `chimera run-task` or a stage, which start the server"
        )
    return Endpoint(model.base_url, model.served_model, model.api_key.get_secret_value())


@runtime_checkable
class ModelProvider(Protocol):
    """Gives each role the chat model it should use in this rollout."""

    def for_role(self, role: str) -> BaseChatModel:
        """The chat model for a role name of the config."""
        ...


_HTTP_CLIENTS: dict[int, tuple[httpx.Client, httpx.AsyncClient]] = {}
_HTTP_LOCK = threading.Lock()


def shared_http_clients() -> tuple[httpx.Client, httpx.AsyncClient]:
    """This process's HTTP clients (sync, async) for every OpenAI-compatible model client.

    Without them each ChatOpenAI or OpenAI client with a new base URL builds its own httpx
    clients, TLS context included: ~70 ms of CPU per chat model, and under Agent Lightning every
    rollout has a new proxy URL (rollout and attempt ids are in it), so a rollout paid ~0.3 s
    for clients that LangChain then caches forever. Keyed by process: runners are forked, and a
    connection pool must not cross a fork. Base URL, timeout and retries stay per client.
    """
    import openai

    pid = os.getpid()
    with _HTTP_LOCK:
        if pid not in _HTTP_CLIENTS:
            _HTTP_CLIENTS[pid] = (openai.DefaultHttpxClient(), openai.DefaultAsyncHttpxClient())
        return _HTTP_CLIENTS[pid]


def endpoint_chat_model(
    config: ModelEndpointConfig, endpoint: Endpoint, temperature: float | None = None
) -> BaseChatModel:
    """An OpenAI-compatible chat model for one alias, with its sampling and retry settings."""
    sampling = config.sampling
    http_client, http_async_client = shared_http_clients()
    return ChatOpenAI(
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key=SecretStr(endpoint.api_key),
        temperature=sampling.temperature if temperature is None else temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        timeout=config.timeout_s,
        max_retries=config.max_retries,
        http_client=http_client,
        http_async_client=http_async_client,
    )


class ConfigModelProvider:
    """Models from ``config.models``, each called at its alias's endpoint."""

    def __init__(
        self,
        config: ChimeraConfig,
        endpoints: Mapping[str, Endpoint] | None = None,
        overrides: Mapping[str, BaseChatModel] | None = None,
    ) -> None:
        self.config = config
        self.endpoints = dict(endpoints or {})
        self.overrides = dict(overrides or {})
        # Shared with derived providers, so a swap rebuilds nothing for the other roles.
        self._cache: dict[tuple[str, float | None], BaseChatModel] = {}
        self._lock = threading.Lock()

    def endpoint(self, alias: str) -> Endpoint:
        """Where an alias is served: the given endpoint, else its configured ``openai`` URL."""
        if alias in self.endpoints:
            return self.endpoints[alias]
        return configured_endpoint(self.config.models[alias])

    def for_role(self, role: str) -> BaseChatModel:
        """The role's override if any, else its alias's model at the role's temperature."""
        if role in self.overrides:
            return self.overrides[role]
        try:
            role_cfg = self.config.roles[role]
        except KeyError:
            raise ChimeraError(
                f"unknown role {role!r} (known: {', '.join(self.config.roles)})"
            ) from None
        key = (role_cfg.model, role_cfg.temperature)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = endpoint_chat_model(
                    self.config.models[role_cfg.model],
                    self.endpoint(role_cfg.model),
                    role_cfg.temperature,
                )
            return self._cache[key]

    def with_overrides(self, models: Mapping[str, BaseChatModel]) -> ConfigModelProvider:
        """A provider that uses the given models for those roles and this one's for the rest."""
        derived = ConfigModelProvider(self.config, self.endpoints, {**self.overrides, **models})
        derived._cache, derived._lock = self._cache, self._lock
        return derived

    def with_trainable(self, model: BaseChatModel) -> ConfigModelProvider:
        """A provider binding every ``trainable`` role to the model under training."""
        trainable = [name for name, role in self.config.roles.items() if role.trainable]
        return self.with_overrides(dict.fromkeys(trainable, model))
