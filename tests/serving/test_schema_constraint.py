"""Schema mode: fixed keys and punctuation, each value by its own grammar."""

from __future__ import annotations

import json

import pytest

from chimera_core.serving.schema_constraint import SchemaPrefix, compile_flat_schema

SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "delta": {"type": "integer"},
        "ok": {"type": "boolean"},
        "decision": {"enum": ["GO", "NO-GO"]},
        "note": {"type": "string"},
    },
}


def _state() -> SchemaPrefix:
    template = compile_flat_schema({"name": "x", "schema": SCHEMA})
    assert template is not None
    return SchemaPrefix(template)


@pytest.mark.parametrize(
    "text",
    [
        '{"score": 0.75, "delta": -3, "ok": true, "decision": "NO-GO", "note": "a \\"b\\" c"}',
        '{"score": 1, "delta": 0, "ok": false, "decision": "GO", "note": ""}',
    ],
)
def test_valid_documents_are_read_to_completion(text: str) -> None:
    state = _state()
    assert state.feed(text)
    assert state.complete
    assert list(json.loads(text)) == list(SCHEMA["properties"])  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "text",
    [
        '{"scor',  # a prefix is fine
        '{"score": 0.',
        '{"score": 0.5, "delta": -',
        '{"score": 0.5, "delta": 2, "ok": tr',
        '{"score": 0.5, "delta": 2, "ok": true, "decision": "NO',
    ],
)
def test_prefixes_are_accepted_but_not_complete(text: str) -> None:
    state = _state()
    assert state.feed(text)
    assert not state.complete


@pytest.mark.parametrize(
    "text",
    [
        '\n{"score"',  # no free whitespace: the template fixes the layout
        '{"novelty": 1',  # another key
        '{"score": -0.5',  # minimum 0: no sign
        '{"score": 01',  # no leading zeros
        '{"score": 0.5 ,',
        '{"score": 0.5, "delta": 1.5',  # integer
        '{"score": 0.5, "delta": 1, "ok": yes',
        '{"score": 0.5, "delta": 1, "ok": true, "decision": "MAYBE"',
        '{"score": 0.5, "delta": 1, "ok": true, "decision": "GO", "note": "x"}}',
    ],
)
def test_text_leaving_the_template_is_refused(text: str) -> None:
    assert not _state().feed(text)


def test_accepts_does_not_move_the_state() -> None:
    state = _state()
    assert state.feed('{"score": 0')
    assert state.accepts(".5, ")
    assert state.accepts(", ")
    assert not state.accepts("x")
    assert state.feed(", ")
    assert state.accepts('"delta')


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "number"}},
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {"steps": {"type": "array"}}},
        {"type": "object", "properties": {"x": {"$ref": "#/$defs/X"}}},
    ],
)
def test_other_schemas_fall_back_to_json_mode(schema: dict) -> None:  # type: ignore[type-arg]
    assert compile_flat_schema(schema) is None
