"""HTTP routes on the tiny model: formats, limits, errors, streaming, tools, admin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chimera_core.config.models import EmbeddedServerConfig
from chimera_core.serving.app import create_app
from tests.serving.fakes import CharCodec, tiny_pool

SETTINGS = EmbeddedServerConfig(
    max_batch_size=4, max_new_tokens=32, max_prompt_tokens=1000, max_request_bytes=4096
)
CODEC = CharCodec()
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a gene",
        "parameters": {"type": "object", "properties": {"gene": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    pool = tiny_pool(["tiny", "tiny-2"], SETTINGS)
    with TestClient(create_app(pool, SETTINGS)) as test_client:
        yield test_client
    pool.close()


def chat(client: TestClient, **body: Any) -> Any:
    payload = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], **body}
    return client.post("/v1/chat/completions", json=payload)


def test_completion_shape_usage_and_token_ids(client: TestClient) -> None:
    response = chat(client, max_tokens=6, min_tokens=6, temperature=0)
    assert response.status_code == 200
    body = response.json()
    [choice] = body["choices"]
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    assert choice["finish_reason"] == "length"
    assert len(choice["token_ids"]) == 6 == body["usage"]["completion_tokens"]
    assert CODEC.decode(choice["token_ids"]) == choice["message"]["content"]
    assert CODEC.decode(body["prompt_token_ids"]) == "user: hello\nassistant: "
    assert body["usage"]["prompt_tokens"] == len(body["prompt_token_ids"])


def test_names_on_one_checkpoint_are_listed(client: TestClient) -> None:
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["tiny", "tiny-2"]
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/admin/models").json()["tiny"]["shared_with"] == ["tiny-2"]


def test_n_choices_seed_and_max_completion_tokens(client: TestClient) -> None:
    first = chat(client, n=3, seed=5, temperature=1.0, max_completion_tokens=5, min_tokens=5)
    again = chat(client, n=3, seed=5, temperature=1.0, max_completion_tokens=5, min_tokens=5)
    choices = first.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert [c["token_ids"] for c in choices] == [c["token_ids"] for c in again.json()["choices"]]
    assert first.json()["usage"]["completion_tokens"] == 15


def test_json_mode_parses(client: TestClient) -> None:
    for seed in range(3):
        body = chat(client, response_format={"type": "json_object"}, seed=seed, max_tokens=20)
        content = body.json()["choices"][0]["message"]["content"]
        assert isinstance(json.loads(content), dict), content


def test_forced_tool_call_is_parsed(client: TestClient) -> None:
    response = chat(
        client,
        tools=[TOOL],
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        max_tokens=32,
        temperature=0,
    )
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls", choice
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "lookup" and call["type"] == "function"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_streaming_matches_non_streaming(client: TestClient) -> None:
    settings = {"max_tokens": 8, "min_tokens": 8, "temperature": 0}
    whole = chat(client, **settings).json()["choices"][0]
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "hello"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            **settings,
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "prompt_token_ids" in chunks[0]
    deltas = [c["choices"][0] for c in chunks[1:-1]]
    assert "".join(d["delta"].get("content", "") for d in deltas) == whole["message"]["content"]
    assert [t for d in deltas for t in d["token_ids"]] == whole["token_ids"]
    assert deltas[-1]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_streamed_tool_call(client: TestClient) -> None:
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "hello"}],
            "stream": True,
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "max_tokens": 32,
        },
    ) as response:
        chunks = [
            json.loads(line.removeprefix("data: "))
            for line in response.iter_lines()
            if line and line != "data: [DONE]"
        ]
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] == "tool_calls"
    assert last["delta"]["tool_calls"][0]["function"]["name"] == "lookup"
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks)  # all held back


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "nope"}, 404, "served models: tiny, tiny-2"),
        ({"max_tokens": 33}, 400, "max_tokens=33 exceeds this server's limit of 32"),
        ({"max_completion_tokens": 99}, 400, "max_completion_tokens=99"),
        ({"messages": [{"role": "user", "content": "x" * 1200}]}, 400, "prompt is 12"),
        ({"messages": []}, 400, "messages"),
        ({"temperature": 5}, 400, "temperature"),
        ({"n": 5}, 400, "n=5 exceeds serving.max_batch_size=4"),
        ({"tool_choice": {"type": "function", "function": {"name": "x"}}}, 400, "not in tools"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "text only",
        ),
    ],
)
def test_bad_requests_get_clear_4xx(
    client: TestClient, body: dict[str, Any], status: int, needle: str
) -> None:
    response = chat(client, **body)
    assert response.status_code == status
    assert needle in response.json()["error"]["message"]


def test_oversized_and_malformed_bodies_then_still_serving(client: TestClient) -> None:
    big = client.post("/v1/chat/completions", content=b"{" + b" " * 5000 + b"}")
    assert big.status_code == 413
    assert "serving.max_request_bytes" in big.json()["error"]["message"]
    bad = client.post("/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    assert chat(client, max_tokens=2).status_code == 200


def test_admin_validation_errors(client: TestClient) -> None:
    missing = client.post("/admin/models", json={"name": "x", "path": "/does/not/exist"})
    assert missing.status_code == 400 and "not a directory" in missing.json()["error"]["message"]
    assert client.delete("/admin/models/unknown").status_code == 404


def test_logprobs_and_client_extras(client: TestClient) -> None:
    # LiteLLM's proxy (Agent Lightning) sends logprobs=1 and vLLM's return_token_ids.
    body = chat(
        client,
        max_tokens=4,
        min_tokens=4,
        seed=0,
        logprobs=1,
        top_logprobs=2,
        return_token_ids=True,
    )
    body = body.json()
    [choice] = body["choices"]
    entries = choice["logprobs"]["content"]
    assert [e["token"] for e in entries] == [CODEC.token_text(t) for t in choice["token_ids"]]
    assert all(len(e["top_logprobs"]) == 2 and e["logprob"] <= 0 for e in entries)
    assert chat(client, max_tokens=1, user="someone", parallel_tool_calls=False).status_code == 200
