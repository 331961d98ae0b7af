"""PubMedQA loading: every accepted format, validation errors naming record and field."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chimera_core.data.pubmedqa import read_file, read_id_file, to_tasks
from chimera_core.data.splits import official_split, seed_split, stratified_split
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import DataError


def _ori(pmid: str, label: str = "yes", **extra: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "QUESTION": f"Question {pmid}?",
        "CONTEXTS": ["First paragraph.", "Second paragraph."],
        "LABELS": ["BACKGROUND", "RESULTS"],
        "MESHES": ["Humans"],
        "YEAR": "2001",
        "final_decision": label,
        "LONG_ANSWER": f"SECRET CONCLUSION {pmid}",
    }
    rec.update(extra)
    return rec


def _write_json(tmp_path: Path, data: object, name: str = "d.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_original_form_drops_the_conclusion(tmp_path: Path) -> None:
    tasks = to_tasks(read_file(_write_json(tmp_path, {"11": _ori("11"), "12": _ori("12", "no")})))
    assert [t.id for t in tasks] == ["11", "12"]
    assert tasks[0].context == "First paragraph.\n\nSecond paragraph."
    assert tasks[1].expected_decision == "no"
    assert all("SECRET" not in t.model_dump_json() for t in tasks)


def test_jsonl_and_parquet_in_hub_form(tmp_path: Path) -> None:
    hub_rows = [
        {
            "pubid": 21,
            "question": "Q?",
            "context": {"contexts": ["c1"], "labels": ["L"], "meshes": ["M"]},
            "long_answer": "SECRET",
            "final_decision": "maybe",
        }
    ]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in hub_rows) + "\n")
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(hub_rows), parquet)
    for path in (jsonl, parquet):
        (task,) = to_tasks(read_file(path))
        assert (task.id, task.goal, task.context, task.expected_decision, task.meshes) == (
            "21",
            "Q?",
            "c1",
            "maybe",
            ["M"],
        )


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            {"7": {k: v for k, v in _ori("7").items() if k != "QUESTION"}},
            "record 7: field 'QUESTION'",
        ),
        ({"7": _ori("7", CONTEXTS=[])}, "record 7: field 'CONTEXTS'"),
        ({"7": _ori("7", "perhaps")}, "record 7: field 'final_decision': unknown label 'perhaps'"),
        ({"7": "not a record"}, "record 7: expected an object"),
        # A field of the wrong type: a DataError naming it, never a TypeError.
        ({"7": _ori("7", MESHES=5)}, "record 7: field 'MESHES': expected a list of strings"),
        ({"7": _ori("7", MESHES=["a", 3])}, "record 7: field 'MESHES'"),
        ({"7": _ori("7", YEAR={"y": 1})}, "record 7: field 'YEAR': expected a year"),
        ({"7": _ori("7", QUESTION=5)}, r"record 7: field 'QUESTION': expected a string \(got int"),
        ({"7": _ori("7", CONTEXTS=[1])}, "record 7: field 'CONTEXTS'"),
        ({"7": _ori("7", final_decision=1)}, "record 7: field 'final_decision'"),
        ([{**_ori("7"), "pubid": [7]}], r"field 'pubid' \(the PMID\): expected a string"),
        (
            [{"pubid": 8, "question": "Q?", "final_decision": "no", "context": {"meshes": 1}}],
            "record 8: field 'context.contexts'",
        ),
        (
            [
                {
                    "pubid": 8,
                    "question": "Q?",
                    "final_decision": "no",
                    "context": {"contexts": ["c"], "meshes": 1},
                }
            ],
            "record 8: field 'context.meshes'",
        ),
    ],
)
def test_bad_records_name_record_and_field(tmp_path: Path, records: object, message: str) -> None:
    path = _write_json(tmp_path, records)
    with pytest.raises(DataError, match=message) as err:
        to_tasks(read_file(path))
    assert str(path) in str(err.value)


def test_duplicate_ids_and_malformed_json(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        json.dumps({"pubid": 1, **_ori("1")}) + "\n" + json.dumps({"pubid": 1, **_ori("1")}) + "\n"
    )
    with pytest.raises(
        DataError, match=r"d.jsonl:2: record 1: duplicate id \(first seen at .*d.jsonl:1\)"
    ):
        to_tasks(read_file(jsonl))
    jsonl.write_text('{"pubid": 1,\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: malformed JSON"):
        to_tasks(read_file(jsonl))
    broken = tmp_path / "b.json"
    broken.write_text('{"1": {"QUESTION": "q",}}')
    with pytest.raises(DataError, match=r"b.json: malformed JSON at line 1"):
        to_tasks(read_file(broken))


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_file(tmp_path / "nope.json")
    (tmp_path / "d.csv").write_text("a,b")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        read_file(tmp_path / "d.csv")


def test_a_non_utf8_line_of_a_jsonl_file_is_named(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(json.dumps({"pubid": 1, **_ori("1")}).encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(DataError, match=r"d.jsonl:2: not UTF-8 text \(byte 0xff at offset 0\)"):
        to_tasks(read_file(jsonl))


@pytest.fixture(scope="module")
def all_tasks(pubmedqa_file: Path) -> list[ResearchTask]:
    return to_tasks(read_file(pubmedqa_file))


def _check_splits(tasks: list[ResearchTask], test_ids: set[str], labels: dict[str, int]) -> None:
    n = len(tasks)
    assert n == sum(labels.values())
    assert {label: sum(t.expected_decision == label for t in tasks) for label in labels} == labels
    seed = seed_split(tasks, 0.8)
    n_train = round(n * 0.8)
    assert [t.split for t in seed].count("train") == n_train
    assert all(t.split == "train" for t in seed[:n_train])
    official = official_split(tasks, test_ids)
    assert [t.split for t in official].count("test") == len(test_ids)
    strat = stratified_split(tasks, 0.8, seed=3)
    assert strat == stratified_split(tasks, 0.8, seed=3)
    for label, total in labels.items():
        n_label = sum(t.split == "train" and t.expected_decision == label for t in strat)
        assert n_label == round(total * 0.8)


def test_real_file_splits(all_tasks: list[ResearchTask], test_ids_file: Path) -> None:
    # The fixture: 40 real records with every label, 20 of them in the official test split.
    _check_splits(all_tasks, read_id_file(test_ids_file), {"yes": 18, "no": 12, "maybe": 10})


def test_the_whole_pqal_file_splits(pubmedqa_full_dir: Path) -> None:
    tasks = to_tasks(read_file(pubmedqa_full_dir / "ori_pqal.json"))
    test_ids = read_id_file(pubmedqa_full_dir / "test_ground_truth.json")
    assert len(test_ids) == 500
    _check_splits(tasks, test_ids, {"yes": 552, "no": 338, "maybe": 110})


def test_official_split_with_unknown_ids(all_tasks: list[ResearchTask]) -> None:
    with pytest.raises(DataError, match="1 test id"):
        official_split(all_tasks, {"999999999"})
