"""Where a rollout's record and spans live in the artifact store, and reading them back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.rollouts.storage import (
    load_record,
    load_records,
    load_spans,
    read_spans,
    record_key,
    spans_key,
)
from tests.rollouts.records import make_record

PREFIX = "runs/r1/gather/rollouts"


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _put(store: LocalArtifactStore, record: RolloutRecord, prefix: str = PREFIX) -> str:
    key = record_key(prefix, record.task_id)
    store.put_json(key, record.model_dump(mode="json"))
    return key


def test_records_and_spans_sit_side_by_side_under_the_prefix() -> None:
    assert record_key(PREFIX, "21645374") == f"{PREFIX}/records/21645374.json"
    assert spans_key(PREFIX, "21645374") == f"{PREFIX}/spans/21645374.json"
    # A trailing slash or a redundant segment in the prefix changes nothing.
    assert record_key(PREFIX + "/", "7") == record_key("runs/r1/./gather/rollouts", "7")
    assert spans_key(PREFIX + "/", "7") == f"{PREFIX}/spans/7.json"


def test_a_record_round_trips_through_the_store(store: LocalArtifactStore) -> None:
    record = make_record(
        "1",
        reward_components={"decision_alignment": 1.0},
        usage={"Geneticist": {"calls": 2, "prompt_tokens": 10, "completion_tokens": 5}},
        state={"final_decision": "GO", "messages": [{"role": "ai", "content": "x"}]},
    )
    key = _put(store, record)
    assert store.path(key) == store.root / PREFIX / "records" / "1.json"
    loaded = load_record(store, key)
    assert loaded == record
    assert loaded is not None and loaded.total_tokens == 15


def test_a_missing_record_is_none_and_missing_spans_are_empty(
    store: LocalArtifactStore,
) -> None:
    assert load_record(store, record_key(PREFIX, "nope")) is None
    assert load_spans(store, PREFIX, "nope") == []
    assert load_records(store, PREFIX) == []  # no records/ folder at all


def test_load_records_reads_every_record_of_the_prefix_in_key_order(
    store: LocalArtifactStore,
) -> None:
    for task_id in ("30", "1", "200"):
        _put(store, make_record(task_id))
    _put(store, make_record("9"), prefix="runs/r1/evaluate/rollouts")  # another stage's
    store.put_json(spans_key(PREFIX, "1"), [])  # spans are not records
    store.put_bytes(f"{PREFIX}/records/notes.txt", b"not a record")
    # An in-flight write of the local store (a temp file) is not listed either.
    (store.root / PREFIX / "records" / ".5.json.abc.part").write_text("{")
    loaded = load_records(store, PREFIX)
    assert [r.task_id for r in loaded] == ["1", "200", "30"]  # key (string) order
    assert all(isinstance(r, RolloutRecord) for r in loaded)


def test_spans_are_read_back_as_saved(store: LocalArtifactStore) -> None:
    spans = [
        {"name": "openai.chat.completion", "attributes": {"gen_ai.request.model": "m"}},
        {"name": "Geneticist", "attributes": {}},
    ]
    store.put_bytes(spans_key(PREFIX, "1"), json.dumps(spans).encode())
    assert load_spans(store, PREFIX, "1") == spans
    assert load_spans(store, PREFIX, "2") == []


def test_a_failed_record_keeps_its_reason(store: LocalArtifactStore) -> None:
    record = make_record(
        "1", status="failed", error="ConnectError: refused", reward=None, attempts=3
    )
    loaded = load_record(store, _put(store, record))
    assert loaded is not None
    assert (loaded.status, loaded.error, loaded.attempts, loaded.reward) == (
        "failed",
        "ConnectError: refused",
        3,
        None,
    )


# One unreadable file (a truncated upload, a hand edit, a record of an older schema) must not
# take down the stage reading it: gather and evaluate check each task's record before running
# (runner.py run_rollouts -> load_record), the training stages and evaluate read them all
# (training_stage.py, evaluate.py -> load_records / load_spans). Today each raises, so one bad
# file stops the whole stage.

CORRUPT = {
    "not JSON": b'{"rollout_id": "ro-2", "run_id": ',
    "not a record": json.dumps({"rollout_id": "ro-2", "status": "weird"}).encode(),
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=list(CORRUPT))
def test_a_corrupt_record_counts_as_absent_so_its_task_runs_again(
    store: LocalArtifactStore, content: bytes
) -> None:
    key = record_key(PREFIX, "2")
    store.put_bytes(key, content)
    assert load_record(store, key) is None


@pytest.mark.parametrize("content", CORRUPT.values(), ids=list(CORRUPT))
def test_load_records_skips_a_corrupt_record_and_keeps_the_rest(
    store: LocalArtifactStore, content: bytes
) -> None:
    _put(store, make_record("1"))
    store.put_bytes(record_key(PREFIX, "2"), content)
    _put(store, make_record("3"))
    assert [r.task_id for r in load_records(store, PREFIX)] == ["1", "3"]


def test_corrupt_spans_read_as_no_spans(store: LocalArtifactStore) -> None:
    store.put_bytes(spans_key(PREFIX, "1"), b"[{")
    assert load_spans(store, PREFIX, "1") == []


WRONG_SHAPE_SPANS = {
    "an object": {"name": "Geneticist"},
    "a list of strings": ["Geneticist"],
    "a number": 3,
}


@pytest.mark.parametrize("value", WRONG_SHAPE_SPANS.values(), ids=list(WRONG_SHAPE_SPANS))
def test_spans_of_the_wrong_shape_count_as_absent_with_a_warning_naming_the_file(
    store: LocalArtifactStore, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    store.put_json(spans_key(PREFIX, "1"), value)
    assert read_spans(store, PREFIX, "1") is None
    assert load_spans(store, PREFIX, "1") == []
    assert f"{PREFIX}/spans/1.json" in caplog.text and "treated as absent" in caplog.text


@pytest.mark.parametrize("value", [[1, 2], "a string", {"task_id": 7}], ids=str)
def test_a_record_of_the_wrong_shape_counts_as_absent_with_a_warning(
    store: LocalArtifactStore, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    key = record_key(PREFIX, "2")
    store.put_json(key, value)
    assert load_record(store, key) is None
    assert f"{PREFIX}/records/2.json" in caplog.text and "treated as absent" in caplog.text


def test_missing_spans_read_as_none_so_a_trainer_can_tell_them_from_empty(
    store: LocalArtifactStore,
) -> None:
    assert read_spans(store, PREFIX, "1") is None
    store.put_json(spans_key(PREFIX, "1"), [])
    assert read_spans(store, PREFIX, "1") == []
