"""Hermes tool-call parsing on crafted model outputs."""

from __future__ import annotations

import json

from chimera_core.serving.tool_calls import (
    forced_call_prefix,
    parse_tool_calls,
    render_tool_calls,
    tools_system_prompt,
)

KNOWN = {"pubmed_search", "gene_lookup"}


def test_single_call_is_parsed_and_removed_from_content() -> None:
    text = (
        "Let me search.\n<tool_call>\n"
        '{"name": "pubmed_search", "arguments": {"query": "BRCA1", "top_k": 3}}\n</tool_call>'
    )
    content, calls = parse_tool_calls(text, KNOWN)
    assert content == "Let me search."
    assert [c.name for c in calls] == ["pubmed_search"]
    assert json.loads(calls[0].arguments) == {"query": "BRCA1", "top_k": 3}
    assert calls[0].id.startswith("call_")


def test_several_calls_fences_and_a_missing_closing_tag() -> None:
    text = (
        '<tool_call>```json\n{"name": "gene_lookup", "arguments": "{\\"gene\\": \\"TP53\\"}"}\n```'
        "</tool_call>\n"
        '<tool_call>{"name": "pubmed_search", "arguments": {"query": "p53"}}'
    )
    content, calls = parse_tool_calls(text, KNOWN)
    assert content is None
    assert [c.name for c in calls] == ["gene_lookup", "pubmed_search"]
    assert json.loads(calls[0].arguments) == {"gene": "TP53"}  # string arguments decoded
    assert len({c.id for c in calls}) == 2


def test_unknown_tools_and_broken_json_stay_text() -> None:
    unknown = '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
    content, calls = parse_tool_calls(unknown, KNOWN)
    assert calls == [] and content == unknown
    broken = '<tool_call>{"name": "pubmed_search", "arguments": {</tool_call>'
    assert parse_tool_calls(broken, KNOWN)[1] == []
    assert parse_tool_calls("no calls here", KNOWN) == ("no calls here", [])


def test_without_a_known_list_any_name_parses() -> None:
    _content, calls = parse_tool_calls('<tool_call>{"name": "x", "arguments": {}}</tool_call>')
    assert calls[0].name == "x" and calls[0].arguments == "{}"


def test_rendered_history_parses_back() -> None:
    history = [{"function": {"name": "pubmed_search", "arguments": '{"query": "aspirin"}'}}]
    _content, calls = parse_tool_calls(render_tool_calls(history), KNOWN)
    assert json.loads(calls[0].arguments) == {"query": "aspirin"}


def test_system_prompt_lists_tools_and_the_format() -> None:
    tool = {"type": "function", "function": {"name": "pubmed_search", "parameters": {}}}
    prompt = tools_system_prompt([tool])
    assert '"name": "pubmed_search"' in prompt
    assert "<tool_call>" in prompt and "<tools>" in prompt


def test_forced_prefix_is_the_start_of_a_call() -> None:
    prefix = forced_call_prefix("gene_lookup")
    _content, calls = parse_tool_calls(prefix + '"gene": "TP53"}}', KNOWN)
    assert calls[0].name == "gene_lookup"
