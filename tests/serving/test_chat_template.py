"""The vLLM chat template: SmolLM2's ChatML for plain chats, Hermes blocks for tools."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import chimera_core.serving
from chimera_core.data.agent_outputs import JuniorResearch
from chimera_core.lab.prompts import demonstration, shared_task_message, system_prompt, user_prompt
from chimera_core.serving.model_store import prepare_model

# The SmolLM2 tokenizer comes from the prepared base model (converted once, ~40 s, then cached).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = Path(chimera_core.serving.__file__).parent / "chat_template.jinja"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "pubmed_search",
            "description": "Search PubMed.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look up."}},
                "required": ["query"],
            },
        },
    },
    {"type": "function", "function": {"name": "gene_ontology_lookup", "parameters": {}}},
]
# The wording the hand-written server used so far (chimera_core/serving/tool_calls.py).
TOOLS_TEXT = (
    "You are a function calling AI model. You are provided with function signatures within "
    "<tools></tools> XML tags. You may call one or more functions to assist with the user "
    "query. Don't make assumptions about what values to plug into functions.\n"
    "<tools>\n" + "\n".join(json.dumps(t, ensure_ascii=False) for t in TOOLS) + "\n</tools>\n"
    "For each function call return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags as follows:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-dict>}\n</tool_call>'
)
# vLLM's hermes parser: the JSON between the tags, with a name and arguments.
HERMES = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)

GOAL = "Do mitochondria participate in programmed cell death in lace plant leaves?"
CONTEXT = "Programmed cell death (PCD) is the regulated death of cells within an organism. " * 5


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(prepare_model(REPO / ".chimera" / "test-models").path)


def _render(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    kwargs.setdefault("add_generation_prompt", True)
    text: str = tokenizer.apply_chat_template(
        messages, chat_template=TEMPLATE.read_text(), tokenize=False, **kwargs
    )
    return text


def _smollm2(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    kwargs.setdefault("add_generation_prompt", True)
    text: str = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    return text


def _lab_chat(role: str) -> list[dict[str, Any]]:
    """A junior's first prompt as the lab builds it (task, role, demonstration, request)."""
    state = {"research_goal": GOAL, "context": CONTEXT}
    demo_ask, demo_answer = demonstration(role, "junior", JuniorResearch)
    return [
        {"role": "system", "content": shared_task_message(GOAL, CONTEXT)},
        {"role": "system", "content": system_prompt(role, "junior")},
        {"role": "user", "content": demo_ask},
        {"role": "assistant", "content": demo_answer},
        {"role": "user", "content": user_prompt(JuniorResearch, state), "name": role},
    ]


PLAIN_CHATS = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"},
    ],
    _lab_chat("Geneticist"),
]


@pytest.mark.parametrize("chat", PLAIN_CHATS)
@pytest.mark.parametrize("generation", [True, False])
def test_plain_chats_render_as_smollm2s_own_template(
    tokenizer: Any, chat: list[dict[str, Any]], generation: bool
) -> None:
    expected = _smollm2(tokenizer, chat, add_generation_prompt=generation)
    assert _render(tokenizer, chat, add_generation_prompt=generation) == expected
    assert _render(tokenizer, chat, tools=[], add_generation_prompt=generation) == expected


def test_a_chat_without_a_system_message_gets_smollm2s_default(tokenizer: Any) -> None:
    plain = _render(tokenizer, [{"role": "user", "content": "Hi"}])
    assert plain == f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n" + (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    with_tools = _render(tokenizer, [{"role": "user", "content": "Hi"}], tools=TOOLS)
    assert with_tools.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}\n\n{TOOLS_TEXT}<|im_end|>")
    assert with_tools.count("<|im_start|>system") == 1


def test_tools_follow_the_first_system_messages_content(tokenizer: Any) -> None:
    chat = _lab_chat("Pharmacologist")
    rendered = _render(tokenizer, chat, tools=TOOLS)
    shared = chat[0]["content"]
    assert rendered.startswith(f"<|im_start|>system\n{shared}\n\n{TOOLS_TEXT}<|im_end|>\n")
    # The rest is untouched: the role's system message, the demonstration, the request.
    rest = rendered.split("<|im_end|>\n", 1)[1]
    assert rest == _render(tokenizer, chat).split("<|im_end|>\n", 1)[1]
    assert rest.count("<tools>") == 0
    # A role offered tools and one that is not share the task's tokens (the prefix cache's unit).
    with_tools = tokenizer(rendered)["input_ids"]
    without = tokenizer(_render(tokenizer, _lab_chat("Geneticist")))["input_ids"]
    task_tokens = tokenizer(f"<|im_start|>system\n{shared}")["input_ids"]
    common = next(i for i, (a, b) in enumerate(zip(with_tools, without, strict=False)) if a != b)
    assert common >= len(task_tokens) - 1 > 100


@pytest.mark.parametrize("as_string", [False, True])
def test_tool_calls_and_results_render_as_hermes_blocks(tokenizer: Any, as_string: bool) -> None:
    def call(call_id: str, name: str, query: str) -> dict[str, Any]:
        args: Any = {"query": query}
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args) if as_string else args},
        }

    chat: list[dict[str, Any]] = [
        {"role": "system", "content": "Task."},
        {"role": "user", "content": "Look it up."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                call("c1", "pubmed_search", "lace plant PCD"),
                call("c2", "gene_ontology_lookup", "apoptosis"),
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "PMID 1: lace plant leaves"},
        {"role": "tool", "tool_call_id": "c2", "content": "GO:0006915 apoptotic process"},
        {
            "role": "assistant",
            "content": "One more.",
            "tool_calls": [call("c3", "pubmed_search", "mitochondria")],
        },
    ]
    rendered = _render(tokenizer, chat, tools=TOOLS)
    assert rendered.endswith(
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "pubmed_search", "arguments": {"query": "lace plant PCD"}}\n'
        "</tool_call>\n"
        '<tool_call>\n{"name": "gene_ontology_lookup", "arguments": {"query": "apoptosis"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nPMID 1: lace plant leaves\n</tool_response>"
        "<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nGO:0006915 apoptotic process\n</tool_response>"
        "<|im_end|>\n"
        "<|im_start|>assistant\nOne more.\n"
        '<tool_call>\n{"name": "pubmed_search", "arguments": {"query": "mitochondria"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # What the model is shown is what vLLM's hermes parser reads back.
    calls = [json.loads(block) for block in HERMES.findall(rendered.split("<|im_end|>", 1)[1])]
    assert [(c["name"], c["arguments"]["query"]) for c in calls] == [
        ("pubmed_search", "lace plant PCD"),
        ("gene_ontology_lookup", "apoptosis"),
        ("pubmed_search", "mitochondria"),
    ]
