"""The ingest stage and CLI: counts, versions, atomic publication, clear failures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.cli.main import main
from chimera_core.config.models import DataConfig
from chimera_core.data.dataset import DATASET_PREFIX, current_version, load_task_dataset
from chimera_core.data.pubmedqa import load_tasks
from chimera_core.stages.ingest import OFFICIAL_TEST_IDS


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHIMERA_PUBMEDQA_FILE", raising=False)
    return tmp_path


def _store(workdir: Path) -> LocalArtifactStore:
    return LocalArtifactStore(workdir / ".chimera" / "artifacts")


def _labels(path: Path) -> Counter[str]:
    return Counter(r["final_decision"] for r in json.loads(path.read_text()).values())


def test_ingest_seed_split_counts(workdir: Path, pubmedqa_file: Path) -> None:
    assert main(["ingest", "--data-file", str(pubmedqa_file), "--split", "seed"]) == 0
    manifest, tasks = load_task_dataset(_store(workdir))
    labels = _labels(pubmedqa_file)
    n = labels.total()
    assert set(labels) == {"yes", "no", "maybe"}
    assert manifest.n_tasks == len(tasks) == n
    assert {s: sum(c.values()) for s, c in manifest.counts.items()} == {
        "train": round(n * 0.8),
        "validation": n - round(n * 0.8),
    }
    assert manifest.label_totals == dict(labels)
    assert manifest.source == str(pubmedqa_file)
    assert len(manifest.sha256) == 64


def test_ingest_official_split_and_versions(
    workdir: Path, pubmedqa_file: Path, test_ids_file: Path
) -> None:
    args = ["ingest", "--data-file", str(pubmedqa_file), "--split", "official"]
    assert main([*args, "--test-ids", str(test_ids_file)]) == 0
    manifest, _ = load_task_dataset(_store(workdir))
    n_test = len(json.loads(test_ids_file.read_text()))
    n_train = _labels(pubmedqa_file).total() - n_test
    assert {s: sum(c.values()) for s, c in manifest.counts.items()} == {
        "test": n_test,
        "train": n_train,
    }
    first = current_version(_store(workdir))
    # Same input, same version: content-addressed and idempotent.
    assert main([*args, "--test-ids", str(test_ids_file)]) == 0
    assert current_version(_store(workdir)) == first


def test_official_split_without_ids_uses_the_bundled_official_test_ids(
    workdir: Path, pubmedqa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = OFFICIAL_TEST_IDS.read_text().split()
    assert len(ids) == len(set(ids)) == 500
    tasks = {t.id for t in load_tasks(DataConfig(source="file", file=pubmedqa_file))}
    assert not set(ids) <= tasks  # the fixture is a subset of PQA-L: refused, naming the id file
    assert main(["ingest", "--data-file", str(pubmedqa_file), "--split", "official"]) == 2
    assert "pqal_official_test_ids.txt" in capsys.readouterr().err


def test_official_split_of_the_whole_set_uses_the_bundled_ids(
    workdir: Path, pubmedqa_full_dir: Path
) -> None:
    data_file = pubmedqa_full_dir / "ori_pqal.json"
    assert main(["ingest", "--data-file", str(data_file), "--split", "official"]) == 0
    manifest, _ = load_task_dataset(_store(workdir))
    assert {s: sum(c.values()) for s, c in manifest.counts.items()} == {"test": 500, "train": 500}


def test_bad_data_keeps_the_current_version(
    workdir: Path, pubmedqa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "--data-file", str(pubmedqa_file)]) == 0
    good = current_version(_store(workdir))
    data = json.loads(pubmedqa_file.read_text())
    bad_id = list(data)[len(data) // 2]
    data[bad_id]["final_decision"] = "unclear"
    bad = workdir / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["ingest", "--data-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"record {bad_id}" in err and "final_decision" in err and "Traceback" not in err
    assert current_version(_store(workdir)) == good
    versions = {k.split("/")[2] for k in _store(workdir).list(DATASET_PREFIX) if k.count("/") == 3}
    assert versions == {good}


def test_env_variable_selects_the_file(
    workdir: Path, pubmedqa_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHIMERA_PUBMEDQA_FILE", str(pubmedqa_file))
    assert main(["ingest"]) == 0
    assert main(["data", "show", "-n", "2", "--split", "validation"]) == 0


def test_hub_unreachable_gives_a_clear_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tests/conftest.py sets HF_DATASETS_OFFLINE: the Hub path fails fast, as it would offline.
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err
    assert "qiaojin/PubMedQA" in err and "--data-file" in err


def test_stage_is_idempotent_for_a_run_id(
    workdir: Path, pubmedqa_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHIMERA_PUBMEDQA_FILE", str(pubmedqa_file))
    args = ["stage", "ingest", "--run-id", "r1"]
    assert main(args) == 0
    store = _store(workdir)
    first = store.get_json("runs/r1/ingest/result.json")
    assert main(args) == 0
    assert store.get_json("runs/r1/ingest/result.json") == first


def _published(workdir: Path) -> tuple[bytes, list[str]]:
    """CURRENT.json's bytes and every key under the dataset prefix: what ingest publishes."""
    store = _store(workdir)
    return store.get_bytes(f"{DATASET_PREFIX}/CURRENT.json"), list(store.list(DATASET_PREFIX))


def test_a_split_left_empty_is_refused_and_nothing_is_published(
    workdir: Path, pubmedqa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["ingest", "--data-file", str(pubmedqa_file)]
    assert main(data) == 0
    before = _published(workdir)
    empty = workdir / "empty-ids.txt"
    empty.write_text("")
    every = workdir / "every-id.json"
    every.write_text(json.dumps(list(json.loads(pubmedqa_file.read_text()))))
    cases = {
        ("--split", "official", "--test-ids", str(empty)): (str(empty), "test split empty"),
        ("--split", "official", "--test-ids", str(every)): (str(every), "train split empty"),
        ("--split", "seed", "--train-fraction", "0.01"): (
            str(pubmedqa_file),
            "data.train_fraction 0.01 leaves the train split empty",
        ),
        ("--split", "stratified", "--train-fraction", "0.99"): (
            str(pubmedqa_file),
            "data.train_fraction 0.99 leaves the validation split empty",
        ),
    }
    capsys.readouterr()
    for args, (file, message) in cases.items():
        assert main([*data, *args]) == 2, args
        err = " ".join(capsys.readouterr().err.split())
        assert file in err and message in err and "Traceback" not in err, (args, err)
        assert _published(workdir) == before, args


BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"  # what a wrong --data-file often is


def test_a_binary_data_or_test_ids_file_is_a_data_error_naming_it(
    workdir: Path, pubmedqa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "--data-file", str(pubmedqa_file)]) == 0
    before = _published(workdir)
    capsys.readouterr()
    for name in ("data.json", "data.jsonl", "ids.json", "ids.txt"):
        path = workdir / name
        path.write_bytes(BINARY)
        if name.startswith("data"):
            argv = ["ingest", "--data-file", str(path)]
        else:
            argv = ["ingest", "--data-file", str(pubmedqa_file), "--split", "official"]
            argv += ["--test-ids", str(path)]
        assert main(argv) == 2, name
        err = " ".join(capsys.readouterr().err.split())
        assert f"{path}" in err and "not UTF-8 text" in err, err
        assert "Traceback" not in err and "UnicodeDecodeError" not in err, err
        assert _published(workdir) == before, name


def test_a_field_of_the_wrong_type_names_file_record_and_field(
    workdir: Path, pubmedqa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "--data-file", str(pubmedqa_file)]) == 0
    before = _published(workdir)
    data = json.loads(pubmedqa_file.read_text())
    pmid = list(data)[3]
    data[pmid]["MESHES"] = 5
    bad = workdir / "bad-meshes.json"
    bad.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["ingest", "--data-file", str(bad)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{bad}: record {pmid}: field 'MESHES': expected a list of strings (got int 5)" in err
    assert "Traceback" not in err and "TypeError" not in err
    assert _published(workdir) == before


def test_an_overlong_run_id_is_refused_before_any_stage_runs(
    workdir: Path,
    pubmedqa_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ingest", "--data-file", str(pubmedqa_file)]) == 0
    before = _published(workdir)
    runs = list(_store(workdir).list("runs"))
    monkeypatch.setenv("CHIMERA_PUBMEDQA_FILE", str(pubmedqa_file))
    long_id = "r" * 300
    capsys.readouterr()
    for argv in (
        ["ingest", "--split", "stratified", "--run-id", long_id],
        ["stage", "ingest", "--run-id", long_id],
        ["pipeline", "run", "--stages", "ingest", "--run-id", long_id],
        ["ingest", "--run-id", ":::"],
    ):
        assert main(argv) == 2, argv
        err = " ".join(capsys.readouterr().err.split())
        assert "--run-id" in err and "Traceback" not in err and "OSError" not in err, err
        assert _published(workdir) == before, argv
    assert list(_store(workdir).list("runs")) == runs
    assert main(["ingest", "--run-id", "r" * 128]) == 0  # the limit itself is fine


def test_the_store_refuses_a_key_part_too_long_before_the_stage_runs(workdir: Path) -> None:
    from chimera_core.config import load_config
    from chimera_core.errors import ArtifactError
    from chimera_core.stages import StageContext, StageResult, execute_stage

    ran: list[str] = []

    def stage(ctx: StageContext) -> StageResult:
        ran.append(ctx.run_id)
        return StageResult(stage=ctx.stage, run_id=ctx.run_id)

    config = load_config("local", environ={})
    with pytest.raises(ArtifactError, match=r"invalid artifact key 'runs/r{300}/x/result.json'"):
        execute_stage(stage, "x", config, "r" * 300, store=_store(workdir))
    assert ran == []


def test_a_damaged_version_names_the_fix_and_ingesting_the_same_content_repairs_it(
    workdir: Path, pubmedqa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ingest", "--data-file", str(pubmedqa_file), "--split", "seed"]
    assert main(args) == 0
    store = _store(workdir)
    version = current_version(store)
    tasks_key = f"{DATASET_PREFIX}/{version}/tasks.jsonl"
    good = store.get_bytes(tasks_key)
    store.put_bytes(tasks_key, good[: len(good) // 2])  # a partial copy
    capsys.readouterr()
    assert main(["data", "show", "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert "tasks.jsonl" in err and "checksum" in err and "chimera ingest" in err
    assert "Traceback" not in err
    assert store.get_bytes(tasks_key) == good[: len(good) // 2]  # the failing read changed nothing
    assert main(args) == 0  # same content: the damaged version is published again
    assert store.get_bytes(tasks_key) == good
    assert current_version(store) == version
    assert main(["data", "show", "-n", "1"]) == 0
