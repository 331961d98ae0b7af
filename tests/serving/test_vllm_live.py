"""The real vLLM CPU server with SmolLM2: what the lab, the trainers and Agent Lightning rely on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from chimera_core.serving.vllm_server import VLLMServer

pytestmark = pytest.mark.slow

QUESTION = "Name three colours of the rainbow."


def _chat(server: VLLMServer, model: str, **body: Any) -> dict[str, Any]:
    messages = body.pop("messages", [{"role": "user", "content": QUESTION}])
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": model, "messages": messages, "temperature": 0, **body},
        headers=server.headers,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture(scope="module")
def server(live_serving: Any) -> VLLMServer:
    live_serving.endpoints({})
    running: VLLMServer = live_serving.server
    return running


def test_token_ids_decode_back_to_the_text(server: VLLMServer) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(server.spec.base_dir)
    body = _chat(server, server.spec.base_name, max_tokens=16, return_token_ids=True)
    [choice] = body["choices"]
    assert tokenizer.decode(choice["token_ids"], skip_special_tokens=True).strip() == (
        choice["message"]["content"].strip()
    )
    assert len(choice["token_ids"]) == body["usage"]["completion_tokens"] <= 16
    assert body["prompt_token_ids"][:3] == tokenizer.encode("<|im_start|>system\n")[:3]


def test_a_nested_json_schema_is_enforced(server: VLLMServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": ["GO", "NO-GO"]},
            "steps": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "required": ["decision", "steps"],
        "additionalProperties": False,
    }
    body = _chat(
        server,
        server.spec.base_name,
        max_tokens=120,
        messages=[{"role": "user", "content": "GO or NO-GO for an aspirin trial? JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "d", "schema": schema}},
    )
    content = body["choices"][0]["message"]["content"]
    if body["choices"][0]["finish_reason"] == "stop":
        value = json.loads(content)
        assert value["decision"] in {"GO", "NO-GO"} and isinstance(value["steps"], list)
    else:  # cut at max_tokens: still the schema's prefix
        assert re.match(r'\{\s*"decision":\s*"(GO|NO-GO)",\s*"steps":\s*\[', content), content


def test_admin_routes_refuse_without_the_key(server: VLLMServer, tmp_path: Path) -> None:
    body = {"lora_name": "x", "lora_path": str(tmp_path)}
    assert httpx.post(f"{server.base_url}/load_lora_adapter", json=body).status_code == 401
    # vLLM's own key check skips routes outside /v1 (SageMaker's adapter API among them).
    sagemaker = {"name": "x", "src": str(tmp_path)}
    assert httpx.post(f"{server.url}/adapters", json=sagemaker).status_code == 401
    assert httpx.delete(f"{server.url}/adapters/x").status_code == 401
    assert httpx.get(f"{server.base_url}/models").status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_lora_adapter_loads_at_runtime_and_changes_the_answer(
    server: VLLMServer, tmp_path: Path
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(server.spec.base_dir, dtype=torch.float32)
    torch.manual_seed(0)
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(tmp_path / "adapter")
    server.load_adapter("test-random-lora", tmp_path / "adapter")
    assert {server.spec.base_name, "test-random-lora"} <= set(server.models())
    base = _chat(server, server.spec.base_name, max_tokens=12)
    tuned = _chat(server, "test-random-lora", max_tokens=12)
    assert base["choices"][0]["message"]["content"] != tuned["choices"][0]["message"]["content"]


def test_the_served_adapter_computes_what_peft_computes(server: VLLMServer, tmp_path: Path) -> None:
    """Chimera's grouped CPU LoRA ops (a vLLM plugin) give PEFT's greedy tokens, in a batch
    that mixes the base model and the adapter."""
    import concurrent.futures

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert "grouped CPU LoRA ops installed" in server.log_path.read_text()
    model = AutoModelForCausalLM.from_pretrained(server.spec.base_dir, dtype=torch.float32)
    torch.manual_seed(1)
    config = LoraConfig(r=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    tuned = get_peft_model(model, config)
    for name, weight in tuned.named_parameters():
        if "lora_" in name:  # both factors nonzero, so the adapter moves every token
            torch.nn.init.normal_(weight, std=0.05)
    tuned.save_pretrained(tmp_path / "adapter")
    server.load_adapter("test-peft-lora", tmp_path / "adapter")

    tokenizer = AutoTokenizer.from_pretrained(server.spec.base_dir)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(
            pool.map(
                lambda model_name: _chat(server, model_name, max_tokens=16, return_token_ids=True),
                [server.spec.base_name, "test-peft-lora"] * 2,
            )
        )
    served = [r["choices"][0]["token_ids"] for r in replies]
    assert served[0] == served[2] and served[1] == served[3]
    assert served[0] != served[1]
    ids = replies[1]["prompt_token_ids"]
    with torch.no_grad():
        expected = tuned.generate(
            torch.tensor([ids]), max_new_tokens=16, do_sample=False, pad_token_id=0
        )[0, len(ids) :].tolist()
    assert served[1] == expected[: len(served[1])], tokenizer.decode(expected)


def test_a_repeated_prompt_hits_the_prefix_cache(server: VLLMServer) -> None:
    long = "Study context: " + " ".join(f"sentence {i} about the trial." for i in range(120))
    before = server.prefix_cache()
    for question in ("Was it safe?", "Was it effective?"):
        messages = [{"role": "system", "content": long}, {"role": "user", "content": question}]
        _chat(server, server.spec.base_name, max_tokens=4, messages=messages)
    queried, hit = (a - b for a, b in zip(server.prefix_cache(), before, strict=True))
    assert queried > 0 and hit / queried > 0.3  # the second call reused the long system block


def test_a_body_nested_100000_deep_gets_400_and_no_traceback(server: VLLMServer) -> None:
    seen = len(server.log_path.read_text(errors="replace"))
    model = server.spec.base_name.encode()
    deep = b'{"model": "' + model + b'", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = {**server.headers, "Content-Type": "application/json"}
    response = httpx.post(f"{server.base_url}/chat/completions", content=deep, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == (
        "the request body nests JSON deeper than 64 levels"
    )
    assert server.alive and httpx.get(f"{server.url}/health").status_code == 200
    log = server.log_path.read_text(errors="replace")[seen:]
    assert "Traceback" not in log
    assert "chimera_vllm_guard: refused POST /v1/chat/completions with HTTP 400" in log


def test_no_local_path_in_the_model_list_or_an_adapter_error(
    server: VLLMServer, tmp_path: Path
) -> None:
    listing = httpx.get(f"{server.base_url}/models", headers=server.headers, timeout=10)
    assert listing.status_code == 200
    assert str(server.spec.base_dir) not in listing.text
    assert all(card["root"] == card["id"] for card in listing.json()["data"])
    answers = set()
    for path in (tmp_path / "no-such-dir", tmp_path):  # missing; a directory but no adapter
        body = {"lora_name": "probe-missing", "lora_path": str(path)}
        url = f"{server.base_url}/load_lora_adapter"
        response = httpx.post(url, json=body, headers=server.headers, timeout=120)
        assert str(tmp_path) not in response.text
        error = response.json()["error"]
        answers.add((response.status_code, error["message"].partition(" (ref")[0]))
    assert answers == {(400, "adapter could not be loaded")}
    assert server.alive and "probe-missing" not in server.models()


def test_the_server_listens_on_loopback_only(server: VLLMServer) -> None:
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, port = local.partition(":")
            if state == "0A" and int(port, 16) == server.port:  # LISTEN
                listening.add(address)
    assert listening == {"0100007F"}  # 127.0.0.1, and no IPv6 or wildcard socket
