"""The real SmolLM2 behind the HTTP server: what clients (LangChain, Agent Lightning) rely on."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from chimera_core.serving.lifecycle import EmbeddedServer
from tests.serving.conftest import NAME_A, NAME_B

pytestmark = pytest.mark.slow

QUESTION = "Name three colours of the rainbow."


def chat(server: EmbeddedServer, model: str = NAME_A, **body: Any) -> dict[str, Any]:
    messages = body.pop("messages", [{"role": "user", "content": QUESTION}])
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": model, "messages": messages, **body},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_langchain_gets_the_requested_number_of_tokens(server: EmbeddedServer) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=server.base_url,
        model=NAME_A,
        api_key="x",  # type: ignore[arg-type]
        max_tokens=12,
        temperature=0.8,
        extra_body={"min_tokens": 12},  # vLLM's option: no early end of sequence
    )
    reply = llm.invoke("Write a sentence about the sea.")
    assert isinstance(reply.content, str) and reply.content.strip()
    assert reply.response_metadata["token_usage"]["completion_tokens"] == 12
    assert reply.response_metadata["finish_reason"] == "length"


def test_token_ids_decode_back_to_the_text(server: EmbeddedServer, tokenizer: Any) -> None:
    body = chat(server, max_tokens=16, temperature=0)
    [choice] = body["choices"]
    assert (
        tokenizer.decode(choice["token_ids"], skip_special_tokens=True)
        == choice["message"]["content"]
    )
    assert len(choice["token_ids"]) == body["usage"]["completion_tokens"] <= 16
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.decode(body["prompt_token_ids"]) == prompt
    assert body["usage"]["prompt_tokens"] == len(body["prompt_token_ids"])


def test_stop_sequences_cut_the_output(server: EmbeddedServer) -> None:
    free = chat(server, max_tokens=24, temperature=0)["choices"][0]["message"]["content"]
    words = free.split()
    assert len(words) >= 4, free
    stop = " " + words[3]
    cut = chat(server, max_tokens=24, temperature=0, stop=[stop, "zzzz"])["choices"][0]
    assert cut["finish_reason"] == "stop"
    assert cut["message"]["content"] == free[: free.index(stop)]


def test_n_choices_with_a_seed_are_reproducible(server: EmbeddedServer) -> None:
    settings = {"n": 3, "temperature": 1.0, "seed": 1234, "max_tokens": 10, "min_tokens": 10}
    first, second = chat(server, **settings), chat(server, **settings)
    assert [c["index"] for c in first["choices"]] == [0, 1, 2]
    ids = [c["token_ids"] for c in first["choices"]]
    assert ids == [c["token_ids"] for c in second["choices"]]
    assert len({tuple(i) for i in ids}) > 1  # the choices are different samples
    assert first["usage"]["completion_tokens"] == 30
    other = chat(server, **{**settings, "seed": 99})
    assert [c["token_ids"] for c in other["choices"]] != ids


def test_json_mode_returns_parseable_json(server: EmbeddedServer) -> None:
    messages = [{"role": "user", "content": "Give the name and age of a person as JSON."}]
    for settings in (
        {"temperature": 0, "max_tokens": 48},
        {"temperature": 1.0, "seed": 3, "max_tokens": 6},
    ):
        body = chat(server, messages=messages, response_format={"type": "json_object"}, **settings)
        content = body["choices"][0]["message"]["content"]
        assert isinstance(json.loads(content), dict), content


def test_flat_json_schema_is_followed_key_by_key(server: EmbeddedServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0},
            "verdict": {"enum": ["GO", "NO-GO"]},
            "reason": {"type": "string"},
        },
    }
    body = chat(
        server,
        messages=[{"role": "user", "content": "Rate this plan: give mice a drug."}],
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        max_tokens=60,
        temperature=0.9,
        seed=3,
    )
    reply = json.loads(body["choices"][0]["message"]["content"])
    assert list(reply) == ["score", "verdict", "reason"]
    assert isinstance(reply["score"], int | float) and reply["score"] >= 0
    assert reply["verdict"] in ("GO", "NO-GO")
    assert isinstance(reply["reason"], str)


def test_streaming_equals_the_whole_reply(server: EmbeddedServer) -> None:
    whole = chat(server, max_tokens=12, temperature=0)["choices"][0]
    chunks = []
    with httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json={
            "model": NAME_A,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 12,
            "temperature": 0,
            "stream": True,
        },
        timeout=120,
    ) as response:
        for line in response.iter_lines():
            if line and line != "data: [DONE]":
                chunks.append(json.loads(line.removeprefix("data: ")))
            elif line == "data: [DONE]":
                chunks.append("DONE")
    assert chunks[-1] == "DONE"
    choices = [c["choices"][0] for c in chunks[1:-1]]
    assert "".join(c["delta"].get("content") or "" for c in choices) == whole["message"]["content"]
    assert [t for c in choices for t in c["token_ids"]] == whole["token_ids"]
    assert choices[-1]["finish_reason"] == whole["finish_reason"]


def test_langchain_tool_calls(server: EmbeddedServer) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def pubmed_search(query: str) -> str:
        """Search PubMed for articles matching the query."""
        return query

    llm = ChatOpenAI(
        base_url=server.base_url, model=NAME_A, api_key="x", temperature=0, max_tokens=40
    )  # type: ignore[arg-type]
    bound = llm.bind_tools([pubmed_search], tool_choice="pubmed_search")
    reply = bound.invoke("Find articles about aspirin and stroke prevention.")
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    [call] = reply.tool_calls
    assert call["name"] == "pubmed_search"
    assert isinstance(call["args"], dict)


def test_bad_requests_do_not_take_the_server_down(server: EmbeddedServer) -> None:
    url = f"{server.base_url}/chat/completions"
    huge = {"model": NAME_A, "messages": [{"role": "user", "content": "x" * 100_000}]}
    assert httpx.post(url, json=huge, timeout=30).status_code == 413
    long_prompt = {"model": NAME_A, "messages": [{"role": "user", "content": "word " * 3000}]}
    response = httpx.post(url, json=long_prompt, timeout=60)
    assert response.status_code == 400
    assert "serving.max_prompt_tokens" in response.json()["error"]["message"]
    too_many = {"model": NAME_A, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}
    assert httpx.post(url, json=too_many, timeout=30).status_code == 400
    assert httpx.post(url, content=b"{broken", timeout=30).status_code == 400
    unknown = httpx.post(url, json={**too_many, "model": "gpt-4", "max_tokens": 1}, timeout=30)
    assert unknown.status_code == 404 and NAME_B in unknown.json()["error"]["message"]
    assert chat(server, max_tokens=2)["choices"][0]["token_ids"]


def test_concurrent_requests_are_batched(server: EmbeddedServer) -> None:
    def stats() -> dict[str, int]:
        load: dict[str, int] = httpx.get(f"{server.url}/admin/models").json()[NAME_A]["load"]
        return load

    before = stats()
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(
                chat(server, max_tokens=16, min_tokens=16, temperature=1.0, seed=i)
            )
        )
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = stats()
    assert [r["usage"]["completion_tokens"] for r in results] == [16] * 4
    assert after["tokens"] - before["tokens"] == 64
    assert after["steps"] - before["steps"] < 48  # 64 tokens in well under 64 steps


def test_second_model_side_by_side_and_hot_reload(server: EmbeddedServer, variant_dir: Any) -> None:
    base_path = server.models[NAME_B]
    loaded = server.load_model("smol-v2", variant_dir)
    assert loaded["previous"] is None
    served = {m["id"]: m["root"] for m in httpx.get(f"{server.base_url}/models").json()["data"]}
    assert served == {NAME_A: str(base_path), NAME_B: str(base_path), "smol-v2": str(variant_dir)}
    greedy = {"max_tokens": 12, "min_tokens": 12, "temperature": 0}
    base_ids = chat(server, NAME_A, **greedy)["choices"][0]["token_ids"]
    variant_ids = chat(server, "smol-v2", **greedy)["choices"][0]["token_ids"]
    assert base_ids != variant_ids

    # Re-point NAME_B at the variant while a streamed request on it is running.
    started = threading.Event()
    streamed: list[int] = []

    def stream_on_b() -> None:
        body = {
            "model": NAME_B,
            "messages": [{"role": "user", "content": QUESTION}],
            "stream": True,
        }
        body |= {"max_tokens": 40, "min_tokens": 40, "temperature": 0}
        with httpx.stream(
            "POST", f"{server.base_url}/chat/completions", json=body, timeout=120
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    streamed.extend(json.loads(line[6:])["choices"][0].get("token_ids") or [])
                    started.set()

    worker = threading.Thread(target=stream_on_b)
    worker.start()
    assert started.wait(60)
    reload = server.load_model(NAME_B, variant_dir)
    worker.join()
    assert reload["previous"] == str(base_path) and reload["shared_with"] == ["smol-v2"]
    assert len(streamed) == 40
    assert streamed[:12] == base_ids  # it finished on the old weights
    assert chat(server, NAME_B, **greedy)["choices"][0]["token_ids"] == variant_ids
    assert chat(server, NAME_A, **greedy)["choices"][0]["token_ids"] == base_ids

    # Back to the base: NAME_B shares NAME_A's copy again; the variant stays under its name.
    server.load_model(NAME_B, base_path)
    admin = httpx.get(f"{server.url}/admin/models").json()
    assert admin[NAME_B]["shared_with"] == [NAME_A]
    assert chat(server, NAME_B, **greedy)["choices"][0]["token_ids"] == base_ids
