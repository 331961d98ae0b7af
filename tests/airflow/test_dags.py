"""DAGs load, and a GPU stage renders to the pod spec the cluster would get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chimera_core.config import load_config
from chimera_core.config.models import PIPELINE_STAGES

REPO = Path(__file__).resolve().parents[2]


def test_dagbag_loads_both_dags_without_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    training = bag.dags["chimera_training"]
    stages = load_config("local").orchestration.stages
    assert stages == list(PIPELINE_STAGES)  # every stage, board between bandit and evaluate
    assert [t.task_id for t in training.topological_sort()] == ["select_stages", *stages, "done"]
    assert training.get_task("done").upstream_task_ids == set(stages)  # any failure fails the run
    # every stage waits for all earlier ones (a left-out stage is skipped before the run starts)
    for i, stage in enumerate(stages):
        task = training.get_task(stage)
        assert task.upstream_task_ids == set(stages[:i] or ["select_stages"]), stage
        assert task.trigger_rule == "none_failed"
    assert training.schedule == "0 2 * * *" or training.timetable.summary == "0 2 * * *"
    assert set(training.params.keys()) >= {"profile", "stages", "gather_tasks", "eval_tasks"}
    evaluate = bag.dags["chimera_evaluate"]
    assert [t.task_id for t in evaluate.topological_sort()] == [
        "select_stages",
        "ingest",
        "evaluate",
        "done",
    ]


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


def _failed_pod(exit_code: int) -> tuple[Any, Any]:
    from kubernetes.client import models as k8s

    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="chimera-sft-abc", namespace="chimera"))
    terminated = k8s.V1ContainerStateTerminated(exit_code=exit_code, reason="Error")
    remote = k8s.V1Pod(
        metadata=pod.metadata,
        status=k8s.V1PodStatus(
            phase="Failed",
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="base",
                    image="chimera-worker",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=k8s.V1ContainerState(terminated=terminated),
                )
            ],
        ),
    )
    return pod, remote


@pytest.mark.parametrize(("code", "retried"), [(2, False), (1, True), (137, True)])
def test_pod_exit_code_decides_whether_a_failure_is_retried(code: int, retried: bool) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
    from chimera_airflow import stage_task

    config = load_config("gpu", environ={"CHIMERA_ORCHESTRATION__EXECUTOR": "kubernetes"})
    op = stage_task("sft", config)
    for call in ("process_pod_deletion", "patch_already_checked", "is_istio_enabled"):
        setattr(op, call, lambda *a, **k: False)  # no cluster here
    pod, remote = _failed_pod(code)
    with pytest.raises(AirflowException) as info:
        op.cleanup(pod, remote)  # type: ignore[attr-defined]
    assert isinstance(info.value, AirflowFailException) is not retried, info.value


def test_unselected_pod_stage_is_skipped_before_the_pod_starts() -> None:
    from airflow.sdk.exceptions import AirflowSkipException
    from chimera_airflow import stage_task

    config = load_config("gpu", environ={"CHIMERA_ORCHESTRATION__EXECUTOR": "kubernetes"})
    op = stage_task("sft", config)
    op.get_or_create_pod = None  # type: ignore[attr-defined]  # would fail if a pod were made
    with pytest.raises(AirflowSkipException):
        op.execute({"params": {"stages": ["ingest"]}})


@pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "chimera").exists(), reason="needs .venv's chimera CLI"
)
@pytest.mark.parametrize("profile", ["local", "gpu"])
def test_param_env_overrides_are_accepted_by_the_config(profile: str) -> None:
    """Every env override a DAG param sets names a real setting of both profiles."""
    import os
    import subprocess

    from chimera_airflow.stage_task import PARAM_ENV

    values = {"model_set": "champion"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIMERA_STAGES__")}
    for param, names in PARAM_ENV.items():
        env.update({name: values.get(param, "3") for name in names})
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "chimera"), "config", "validate", "--profile", profile],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
