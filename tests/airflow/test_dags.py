"""DAGs load, and a GPU stage renders to the pod spec the cluster would get."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera_core.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_dagbag_loads_both_dags_without_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    training = bag.dags["chimera_training"]
    assert [t.task_id for t in training.topological_sort()] == load_config(
        "local"
    ).orchestration.stages
    assert training.schedule == "0 2 * * *" or training.timetable.summary == "0 2 * * *"
    assert set(training.params.keys()) >= {"profile", "stages", "gather_tasks", "eval_tasks"}
    assert [t.task_id for t in bag.dags["chimera_evaluate"].tasks] == ["ingest", "evaluate"]


def test_gpu_stage_pod_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    from chimera_airflow import stage_task

    config = load_config("gpu", environ={"CHIMERA_ORCHESTRATION__EXECUTOR": "kubernetes"})
    op = stage_task("sft", config)
    pod = op.build_pod_request_obj(context=None, dry_run=True)  # type: ignore[attr-defined]
    container = pod.spec.containers[0]
    assert container.image == config.orchestration.pod.image
    assert container.command == ["chimera"]
    assert container.args[:4] == ["stage", "sft", "--run-id", "{{ run_id }}"]
    assert container.args[-2:] == ["--xcom-file", "/airflow/xcom/return.json"]
    assert container.resources.limits == {"nvidia.com/gpu": "1"}
    assert [t.key for t in pod.spec.tolerations] == ["nvidia.com/gpu"]
    secret_envs = {
        e.name: (e.value_from.secret_key_ref.name, e.value_from.secret_key_ref.key)
        for e in container.env
        if e.value_from is not None
    }
    assert secret_envs["CHIMERA_ARTIFACTS__SECRET_KEY"] == ("chimera-minio", "secret_key")
    assert not any("secret" in str(e.value or "").lower() for e in container.env)
    assert op.do_xcom_push  # type: ignore[attr-defined]

    cpu_pod = stage_task("bandit", config).build_pod_request_obj(context=None, dry_run=True)  # type: ignore[attr-defined]
    assert not (cpu_pod.spec.containers[0].resources.limits or {})
    assert not cpu_pod.spec.tolerations
