"""The PI replay benchmark's logic on two recorded rollouts and a scripted model (no server)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_pi_replay import (
    INVALID,
    decide,
    load_replay_tasks,
    replay_decisions,
    rows,
)
from chimera_core.artifacts import LocalArtifactStore
from chimera_core.data.agent_outputs import PIDecision, decoding_budget
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.lab.agents import structured_answer_request
from chimera_core.rollouts.storage import record_key, spans_key

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_rollout.json.gz"
PREFIX = "runs/r1/evaluate/base"
QUESTION = "Landolt C and snellen e acuity: differences in strabismus amblyopia?"
OTHER = "Does coffee cause insomnia in adults?"
GO_YES = '{"final_decision": "GO", "answer": "yes", "rationale": "the context supports it"}'


def _store(root: Path) -> tuple[LocalArtifactStore, str]:
    """Rollouts 1 (label no, recorded no), 2 (label yes, recorded no; another question) and
    3 (failed), 1 and 2 with the recorded real rollout's spans; and its recorded PI reply."""
    with gzip.open(FIXTURE, "rt") as fh:
        payload = json.load(fh)
    spans_text = json.dumps(payload["spans"])
    assert QUESTION in spans_text
    record = RolloutRecord.model_validate(payload["record"])
    store = LocalArtifactStore(root)
    rollouts: list[tuple[RolloutRecord, str | None]] = [
        (record.model_copy(update={"task_id": "1", "expected_decision": "no"}), spans_text),
        (
            record.model_copy(update={"task_id": "2", "expected_decision": "yes"}),
            spans_text.replace(QUESTION, OTHER),
        ),
        (record.model_copy(update={"task_id": "3", "status": "failed", "error": "boom"}), None),
    ]
    for rec, spans in rollouts:
        store.put_json(record_key(PREFIX, rec.task_id), rec.model_dump(mode="json"))
        if spans is not None:
            store.put_bytes(spans_key(PREFIX, rec.task_id), spans.encode())
    calls = [s for s in payload["spans"] if s["name"] == "openai.chat.completion"]
    (pi_reply,) = [
        s["attributes"]["gen_ai.completion.0.content"]
        for s in calls
        if "principal investigator" in json.dumps(s["attributes"]).lower()
        and '"final_decision"' in s["attributes"].get("gen_ai.completion.0.content", "")
    ]
    return store, pi_reply


def _text(prompt: list[dict[str, Any]]) -> str:
    return json.dumps(prompt)


def test_replay_scores_both_arms_and_checks_the_recorded_answers(tmp_path: Path) -> None:
    store, recorded = _store(tmp_path)
    tasks, skipped = load_replay_tasks(store, PREFIX)
    assert [t.record.task_id for t in tasks] == ["1", "2"]
    assert list(skipped) == ["3"]
    for task in tasks:
        # The prompt is the PI call's messages without its reply.
        assert task.prompt[-1]["role"] == "user" and task.recorded_reply == recorded
        assert "principal investigator" in _text(task.prompt).lower()
        assert task.pi_calls == 1
    assert QUESTION in _text(tasks[0].prompt) and OTHER in _text(tasks[1].prompt)
    assert decide(recorded) == ("no", "NO-GO")  # '"NO"' / '"No"': the lab's own mapping

    seen: list[list[dict[str, Any]]] = []

    def base(prompt: list[dict[str, Any]]) -> str:
        seen.append(prompt)
        # Task 1: the recorded reply again (faithful); task 2: yes, unlike the recorded no.
        return recorded if QUESTION in _text(prompt) else GO_YES

    def adapter(prompt: list[dict[str, Any]]) -> str:
        return GO_YES if QUESTION in _text(prompt) else "I would say so, probably."

    report = replay_decisions(tasks, {"base": base, "adapter": adapter}, concurrency=2)
    assert sorted(_text(p) for p in seen) == sorted(_text(t.prompt) for t in tasks)
    arms = report["arms"]
    assert arms["base"]["answers"] == {"yes": 1, "no": 1, "maybe": 0, INVALID: 0, "error": 0}
    assert arms["adapter"]["answers"] == {"yes": 1, "no": 0, "maybe": 0, INVALID: 1, "error": 0}
    assert arms["base"]["exact_accuracy"] == 1.0 and arms["adapter"]["exact_accuracy"] == 0.0
    assert arms["base"]["macro_f1"] == 1.0 and arms["adapter"]["macro_f1"] == 0.0
    assert report["majority"]["exact_accuracy"] == 0.5
    assert report["faithful"] == {"answer_equal": 1, "reply_equal": 1, "of": 2, "repaired": 0}
    paired = report["paired"]["adapter"]
    assert paired["exact_accuracy"]["delta"] == -1.0
    assert paired["macro_f1"]["delta"] == -1.0
    assert paired["exact_accuracy"]["n_pairs"] == 2
    by_task = {t["task_id"]: t for t in report["tasks"]}
    assert by_task["2"]["adapter"]["answer"] == INVALID and by_task["2"]["base"]["answer"] == "yes"
    assert by_task["1"]["recorded_answer"] == "no"

    table = rows(report)
    assert table["faithful_answers"]["value"] == 1
    assert table["adapter_exact_accuracy_delta"]["value"] == -1.0
    assert table["base_exact_accuracy"]["notes"] == "base: yes 1, no 1, maybe 0, invalid 0, error 0"
    json.dumps(report)  # the per-task file is plain JSON


def test_a_failed_request_is_a_wrong_answer_counted_apart(tmp_path: Path) -> None:
    store, recorded = _store(tmp_path)
    tasks, _ = load_replay_tasks(store, PREFIX)

    def flaky(prompt: list[dict[str, Any]]) -> str:
        if OTHER in _text(prompt):
            raise ConnectionError("server gone")
        return recorded

    report = replay_decisions(tasks, {"base": lambda p: recorded, "adapter": flaky})
    assert report["arms"]["adapter"]["answers"]["error"] == 1
    assert report["arms"]["adapter"]["exact_accuracy"] == 0.5
    assert "server gone" in report["tasks"][1]["adapter"]["error"]

    def broken(prompt: list[dict[str, Any]]) -> str:
        raise ConnectionError("server gone")

    with pytest.raises(RuntimeError, match="every request of arm 'adapter' failed"):
        replay_decisions(tasks, {"base": lambda p: recorded, "adapter": broken})


def test_the_request_fields_are_the_labs_structured_answer() -> None:
    request = structured_answer_request(PIDecision)
    assert request["max_tokens"] == decoding_budget(PIDecision)
    form = request["response_format"]
    assert form["type"] == "json_schema" and form["json_schema"]["name"] == "PIDecision"
    assert form["json_schema"]["strict"] is True
    assert form["json_schema"]["schema"]["required"] == ["final_decision", "answer", "rationale"]
