"""Load PubMedQA (PQA-L) from the Hub or a local file into validated ``ResearchTask`` records.

Accepted local forms: the original ``ori_pqal.json`` (a dict keyed by PMID), JSONL (one record
a line, original or Hub field names) and parquet (the Hub's columns). The abstract's
conclusion (LONG_ANSWER / long_answer) is dropped here, so nothing downstream can leak it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from chimera_core.config.models import DataConfig
from chimera_core.data.tasks import LABELS, ResearchTask
from chimera_core.errors import DataError

RawRecord = tuple[str, Mapping[str, Any]]  # (where it came from, the record)


def _field(rec: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in rec:
            return rec[name]
    return None


def _named(rec: Mapping[str, Any], *names: str) -> str:
    """The one of ``names`` the record uses (the first when none), for an error message."""
    return next((name for name in names if name in rec), names[0])


def _got(value: Any) -> str:
    shown = repr(value)
    return f"got {type(value).__name__} {shown if len(shown) <= 60 else shown[:57] + '...'}"


def normalize_record(where: str, rec: Mapping[str, Any], pmid: str | None = None) -> ResearchTask:
    """One raw record (original or Hub field names) as a ResearchTask; DataError names the field."""
    if not isinstance(rec, Mapping):
        raise DataError(f"{where}: record is a {type(rec).__name__}, expected an object")
    raw_nested = rec.get("context")
    nested: Mapping[str, Any] = raw_nested if isinstance(raw_nested, Mapping) else {}
    pmid = pmid or _field(rec, "pubid", "pmid", "PMID", "id")
    if pmid is None or str(pmid).strip() == "":
        raise DataError(f"{where}: missing field 'pubid' (the PMID)")
    if isinstance(pmid, bool) or not isinstance(pmid, str | int):
        field = _named(rec, "pubid", "pmid", "PMID", "id")
        raise DataError(
            f"{where}: field {field!r} (the PMID): expected a string or an integer ({_got(pmid)})"
        )
    pmid = str(pmid).strip()
    at = f"{where}: record {pmid}"

    question = _field(rec, "QUESTION", "question")
    if question is not None and not isinstance(question, str):
        field = _named(rec, "QUESTION", "question")
        raise DataError(f"{at}: field {field!r}: expected a string ({_got(question)})")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{at}: field 'QUESTION': missing or empty")

    contexts = _field(rec, "CONTEXTS", "contexts")
    if contexts is None:
        contexts = nested.get("contexts")
    if hasattr(contexts, "tolist"):
        contexts = contexts.tolist()
    if isinstance(contexts, str):
        contexts = [contexts]
    if (
        not isinstance(contexts, list)
        or not contexts
        or not all(isinstance(c, str) for c in contexts)
    ):
        field = _named(rec, "CONTEXTS", "contexts", "context")
        field += ".contexts" if field == "context" else ""
        raise DataError(
            f"{at}: field {field!r}: expected a non-empty list of strings ({_got(contexts)})"
        )

    label = _field(rec, "final_decision", "FINAL_DECISION")
    if not isinstance(label, str) or label.strip().lower() not in LABELS:
        raise DataError(
            f"{at}: field 'final_decision': unknown label {label!r} (expected yes, no or maybe)"
        )

    meshes = _field(rec, "MESHES", "meshes")
    if meshes is None:
        meshes = nested.get("meshes") or []
    if hasattr(meshes, "tolist"):
        meshes = meshes.tolist()
    if isinstance(meshes, str):
        meshes = [meshes]
    if not isinstance(meshes, list) or not all(isinstance(m, str) for m in meshes):
        field = _named(rec, "MESHES", "meshes", "context")
        field += ".meshes" if field == "context" else ""
        raise DataError(f"{at}: field {field!r}: expected a list of strings ({_got(meshes)})")
    year = _field(rec, "YEAR", "year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, str | int)):
        field = _named(rec, "YEAR", "year")
        raise DataError(f"{at}: field {field!r}: expected a year, string or integer ({_got(year)})")
    return ResearchTask(
        id=pmid,
        goal=question.strip(),
        context="\n\n".join(c.strip() for c in contexts),
        expected_decision=label.strip().lower(),
        meshes=meshes,
        year=str(year) if year is not None else None,
    )


def _decode(path: Path, raw: bytes, where: str | None = None) -> str:
    """UTF-8 text of a data file; a binary or mis-encoded file is a DataError naming it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where or path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); expected a JSON, JSONL or text file"
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_json(path: Path) -> Iterator[RawRecord]:
    text = _decode(path, _read_bytes(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if isinstance(data, Mapping):
        for pmid, rec in data.items():
            if isinstance(rec, Mapping):
                yield f"{path}", {"pubid": pmid, **rec}
            else:
                yield f"{path}", {"pubid": pmid, "_invalid": rec}
    elif isinstance(data, list):
        for i, rec in enumerate(data):
            yield f"{path} (item {i})", rec
    else:
        raise DataError(f"{path}: expected a JSON object keyed by PMID or a list of records")


def _read_jsonl(path: Path) -> Iterator[RawRecord]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = _decode(path, raw, f"{path}:{lineno}")
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: malformed JSON: {exc.msg}") from None


def _read_parquet(path: Path) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable parquet file: {exc}") from None
    for i, rec in enumerate(table.to_pylist()):
        yield f"{path} (row {i})", rec


def read_file(path: Path) -> Iterator[RawRecord]:
    """Raw records of a local PubMedQA file, by extension."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"PubMedQA file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json(path)
    if suffix in {".jsonl", ".ndjson"}:
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(
        f"{path}: unsupported file type {suffix!r} (expected .json, .jsonl or .parquet)"
    )


def read_hub(dataset: str, config_name: str) -> Iterator[RawRecord]:
    """Raw records from the Hugging Face Hub (needs internet)."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset, config_name, split="train")
    except Exception as exc:
        raise DataError(
            f"could not load {dataset}/{config_name} from the Hugging Face Hub "
            f"({type(exc).__name__}: {str(exc)[:200]}). Offline? Use a local file: "
            "--data-file path/to/ori_pqal.json or CHIMERA_PUBMEDQA_FILE."
        ) from None
    for i, rec in enumerate(ds):
        yield f"hub:{dataset}/{config_name} (row {i})", rec


def to_tasks(records: Iterable[RawRecord]) -> list[ResearchTask]:
    """Validate raw records in order; duplicate PMIDs are errors naming both places."""
    tasks: list[ResearchTask] = []
    seen: dict[str, str] = {}
    for where, rec in records:
        if isinstance(rec, Mapping) and "_invalid" in rec:
            raise DataError(f"{where}: record {rec.get('pubid')}: expected an object")
        task = normalize_record(where, rec)
        if task.id in seen:
            raise DataError(
                f"{where}: record {task.id}: duplicate id (first seen at {seen[task.id]})"
            )
        seen[task.id] = where
        tasks.append(task)
    if not tasks:
        raise DataError("the PubMedQA source holds no records")
    return tasks


def source_description(config: DataConfig) -> str:
    """Human-readable name of the configured source."""
    if config.source == "file":
        return str(config.file)
    return f"hub:{config.hub_dataset}/{config.hub_config}"


def load_tasks(config: DataConfig) -> list[ResearchTask]:
    """All tasks of the configured source, in source order, validated, unsplit."""
    if config.source == "file":
        assert config.file is not None  # guaranteed by DataConfig validation
        return to_tasks(read_file(config.file))
    return to_tasks(read_hub(config.hub_dataset, config.hub_config))


def read_id_file(path: Path) -> set[str]:
    """PMIDs from a JSON dict/list (e.g. test_ground_truth.json) or a text file, one a line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"test id file not found: {path}")
    text = _decode(path, _read_bytes(path))
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
        if not isinstance(data, Mapping | list):
            raise DataError(f"{path}: expected a JSON object keyed by PMID or a list of PMIDs")
        return {str(k).strip() for k in data}
    return {line.strip() for line in text.splitlines() if line.strip()}
