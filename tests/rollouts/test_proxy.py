"""The LLM proxy's model list: each alias's served name routed to its endpoint, keys by reference.

Agent Lightning writes the model list to a temporary YAML file, so a key must never be in it:
each entry names an environment variable (``os.environ/...``, which LiteLLM resolves) that the
rollout session sets from ``key_variables``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chimera_core.config import ChimeraConfig, load_config
from chimera_core.lab.models import Endpoint, configured_endpoint
from chimera_core.rollouts.proxy import key_variable, key_variables, proxy_model_list

SERVER = "http://127.0.0.1:8123/v1"  # Chimera's vLLM server (fake address: nothing is called)
SERVER_KEY = "vllm-server-key-0123456789"
REMOTE = "http://10.0.0.7:9000/v1"
REMOTE_KEY = "sk-remote-secret-abcdef"


@pytest.fixture(scope="module")
def config() -> ChimeraConfig:
    """The local profile with one alias (senior) on an OpenAI-compatible endpoint of its own."""
    return load_config(
        "local",
        environ={},
        overrides={
            "models.senior.backend": "openai",
            "models.senior.base_url": REMOTE,
            "models.senior.api_key": REMOTE_KEY,
            "models.senior.served_model": "remote-senior",
            "models.senior.timeout_s": 42.0,
        },
    )


@pytest.fixture(scope="module")
def endpoints(config: ChimeraConfig) -> dict[str, Endpoint]:
    """What ModelServing.endpoints gives a model set: vllm aliases on the one server (the base
    or the alias's adapter), openai aliases at their configured URL."""
    return {
        "junior": Endpoint(SERVER, "junior-v3", SERVER_KEY),  # a registered adapter
        "senior": configured_endpoint(config.models["senior"]),
        "board": Endpoint(SERVER, "SmolLM2-135M-Instruct", SERVER_KEY),  # the base
        "pi": Endpoint(SERVER, "pi-v1", SERVER_KEY),
        "judge": Endpoint(SERVER, "SmolLM2-135M-Instruct", SERVER_KEY),
    }


def _by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["model_name"]: e["litellm_params"] for e in entries}


def test_each_alias_is_routed_from_its_served_name_to_its_endpoint_model(
    config: ChimeraConfig, endpoints: dict[str, Endpoint]
) -> None:
    entries = proxy_model_list(config, endpoints)
    assert len(entries) == len(config.models)
    routes = _by_name(entries)
    assert set(routes) == {m.served_model for m in config.models.values()}
    assert set(routes) == {
        "chimera-junior",
        "remote-senior",
        "chimera-board",
        "chimera-pi",
        "chimera-judge",
    }
    for alias, model in config.models.items():
        params = routes[model.served_model]
        assert params["model"] == f"hosted_vllm/{endpoints[alias].model}"
        assert params["api_base"] == endpoints[alias].base_url
        assert params["timeout"] == model.timeout_s
    # A role routed to an adapter: the adapter's name on the shared server.
    assert routes["chimera-junior"]["model"] == "hosted_vllm/junior-v3"
    assert routes["chimera-board"]["api_base"] == SERVER
    # The openai alias goes to its own URL, under its served name there.
    assert routes["remote-senior"] == {
        "model": "hosted_vllm/remote-senior",
        "api_base": REMOTE,
        "api_key": f"os.environ/{key_variable('senior')}",
        "timeout": 42.0,
    }


def test_the_list_references_keys_by_variable_and_never_contains_one(
    config: ChimeraConfig, endpoints: dict[str, Endpoint]
) -> None:
    entries = proxy_model_list(config, endpoints)
    for alias, model in config.models.items():
        assert _by_name(entries)[model.served_model]["api_key"] == (
            f"os.environ/{key_variable(alias)}"
        )
    text = json.dumps(entries)
    for secret in (SERVER_KEY, REMOTE_KEY):
        assert secret not in text


def test_key_variables_hold_each_alias_key(
    config: ChimeraConfig, endpoints: dict[str, Endpoint]
) -> None:
    assert key_variables(endpoints) == {
        key_variable("junior"): SERVER_KEY,
        key_variable("senior"): REMOTE_KEY,
        key_variable("board"): SERVER_KEY,
        key_variable("pi"): SERVER_KEY,
        key_variable("judge"): SERVER_KEY,
    }
    assert key_variables({}) == {}


def test_litellm_resolves_each_reference_to_the_alias_key(
    config: ChimeraConfig, endpoints: dict[str, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm import get_secret

    for variable, key in key_variables(endpoints).items():  # as the rollout session does
        monkeypatch.setenv(variable, key)
    routes = _by_name(proxy_model_list(config, endpoints))
    for alias, model in config.models.items():
        assert get_secret(routes[model.served_model]["api_key"]) == endpoints[alias].api_key


def test_variable_names_are_environment_safe() -> None:
    assert key_variable("junior").startswith("CHIMERA_ENDPOINT_KEY_JUNIOR_")
    assert key_variable("senior-2.lora").startswith("CHIMERA_ENDPOINT_KEY_SENIOR_2_LORA_")
    assert key_variable("jünior x").startswith("CHIMERA_ENDPOINT_KEY_J_NIOR_X_")


def test_an_alias_without_an_endpoint_is_not_silently_dropped(
    config: ChimeraConfig, endpoints: dict[str, Endpoint]
) -> None:
    partial = {k: v for k, v in endpoints.items() if k != "judge"}
    with pytest.raises(KeyError, match="judge"):
        proxy_model_list(config, partial)


def test_aliases_that_differ_only_in_punctuation_keep_their_own_keys() -> None:
    endpoints = {
        "lab-a": Endpoint(SERVER, "m", "key-of-lab-a"),
        "lab_a": Endpoint(REMOTE, "m", "key-of-lab_a"),
    }
    variables = key_variables(endpoints)
    for alias, endpoint in endpoints.items():
        assert variables[key_variable(alias)] == endpoint.api_key
