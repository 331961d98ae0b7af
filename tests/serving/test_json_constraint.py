"""The JSON prefix checker and repairer that make json mode always parse."""

from __future__ import annotations

import json

import pytest

from chimera_core.serving.json_constraint import JsonPrefix, repair_json

DOCS = [
    '{"a": 1, "b": [true, false, null, -1.5e+3, "x\\"y\\u00e9"], "c": {"d": {}}, "e": []}',
    '{\n  "answer": "yes",\n  "score": 0.25,\n  "list": [1, 2, [3, {"k": "v"}]]\n}',
    "{}",
    '{"a":-0.0E-1,"b":"\\n"}',
]


@pytest.mark.parametrize("doc", DOCS)
def test_valid_documents_are_accepted_and_complete(doc: str) -> None:
    state = JsonPrefix()
    assert state.feed(doc)
    assert state.complete


@pytest.mark.parametrize("doc", DOCS)
def test_every_prefix_repairs_to_parseable_json(doc: str) -> None:
    for end in range(len(doc) + 1):
        repaired = repair_json(doc[:end])
        assert repaired is not None
        assert isinstance(json.loads(repaired), dict), (doc[:end], repaired)


@pytest.mark.parametrize(
    "text",
    ["[1]", '"x"', '{"a" 1}', '{"a":01}', '{"a":1,}', '{"a":tru}', '{"a":"\n"}', '{"a":1}}', "{,}"],
)
def test_invalid_text_is_rejected(text: str) -> None:
    assert not JsonPrefix().feed(text)
    assert repair_json(text) is None


def test_accepts_does_not_change_state_and_after_completion_only_blanks_follow() -> None:
    state = JsonPrefix()
    assert state.feed('{"a": ')
    assert state.accepts("1}") and not state.accepts("}")
    assert state.feed("1}")
    assert state.complete and state.accepts("\n") and not state.accepts("x")


def test_blank_runs_are_capped() -> None:
    state = JsonPrefix(max_ws=4)
    assert state.feed("{   ")
    assert not state.accepts(" " * 2)


def test_non_object_roots_when_allowed() -> None:
    assert JsonPrefix(root_object=False).feed("[1, 2]")
    assert repair_json("[1, 2", root_object=False) == "[1, 2]"
