"""Stage tasks: ``chimera stage NAME --run-id ...`` as a local subprocess or a Kubernetes pod."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from chimera_core.config import ChimeraConfig

# `chimera stage` exits with this code when the run's params deselect the stage.
SKIP_EXIT_CODE = 99
PARAM_ENV = {
    # DAG param -> environment override understood by chimera's config loader
    "gather_tasks": "CHIMERA_STAGES__GATHER__N_TASKS",
    "eval_tasks": "CHIMERA_STAGES__EVALUATE__N_TASKS",
    "sft_steps": "CHIMERA_STAGES__SFT__MAX_STEPS",
    "ppo_steps": "CHIMERA_STAGES__PPO__TOTAL_STEPS",
    "model_set": "CHIMERA_STAGES__EVALUATE__MODEL_SET",
}
RUN_ID = "{{ run_id }}"
STAGES_PARAM = "{{ params.stages | join(',') }}"
PROFILE_PARAM = "{{ params.profile }}"


def stage_arguments(stage: str, extra: Sequence[str] = ()) -> list[str]:
    """The CLI arguments of a stage task (templated: Airflow fills run id and params)."""
    return [
        "stage", stage,
        "--run-id", RUN_ID,
        "--profile", PROFILE_PARAM,
        "--only", STAGES_PARAM,
        "--json",
        *extra,
    ]  # fmt: skip


def param_env() -> dict[str, str]:
    """Templated env overrides from the DAG's params (absent or null leaves the profile's)."""
    return {
        env: f"{{{{ params.{name} if params.{name} is defined and params.{name} is not none "
        f"else '' }}}}"
        for name, env in PARAM_ENV.items()
    }


def minio_env(conn_id: str) -> dict[str, str]:
    """Artifact-store settings from an Airflow `aws` connection (endpoint in its extra)."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:
        return {}  # no connection: the profile's artifact settings apply
    extra = conn.extra_dejson
    endpoint = str(extra.get("endpoint_url", "")).removeprefix("http://").removeprefix("https://")
    env = {
        "CHIMERA_ARTIFACTS__BACKEND": "s3",
        "CHIMERA_ARTIFACTS__ACCESS_KEY": conn.login or "",
        "CHIMERA_ARTIFACTS__SECRET_KEY": conn.password or "",
    }
    if endpoint:
        env["CHIMERA_ARTIFACTS__ENDPOINT"] = endpoint.rstrip("/")
        env["CHIMERA_ARTIFACTS__SECURE"] = str(extra.get("endpoint_url", "")).startswith("https")
    if bucket := extra.get("bucket"):
        env["CHIMERA_ARTIFACTS__BUCKET"] = str(bucket)
    return {k: str(v) for k, v in env.items()}


class ChimeraStageOperator(BaseOperator):
    """Runs one stage with the local ``chimera`` CLI; returns the stage's outputs (XCom)."""

    template_fields: Sequence[str] = ("arguments", "env")

    def __init__(
        self,
        *,
        stage: str,
        command: Sequence[str],
        arguments: Sequence[str],
        env: Mapping[str, str],
        minio_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.command = list(command)
        self.arguments = list(arguments)
        self.env = dict(env)
        self.minio_conn_id = minio_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        env = {**os.environ, **(minio_env(self.minio_conn_id) if self.minio_conn_id else {})}
        env.update({k: v for k, v in self.env.items() if v != ""})
        with tempfile.TemporaryDirectory() as tmp:
            xcom_file = Path(tmp) / "return.json"
            argv = [*self.command, *self.arguments, "--xcom-file", str(xcom_file)]
            self.log.info("running %s", " ".join(argv))
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            for line in (proc.stdout + proc.stderr).splitlines():
                self.log.info("%s", line)
            if proc.returncode == SKIP_EXIT_CODE:
                raise AirflowSkipException(f"stage {self.stage} not selected for this run")
            if proc.returncode != 0:
                raise RuntimeError(f"chimera stage {self.stage} failed (exit {proc.returncode})")
            result: dict[str, Any] = json.loads(xcom_file.read_text())
        return result


def _pod_task(stage: str, config: ChimeraConfig, **kwargs: Any) -> BaseOperator:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    pod = config.orchestration.pod
    gpu = stage in pod.gpu_stages and pod.gpus > 0
    limits = {"nvidia.com/gpu": str(pod.gpus)} if gpu else {}
    return KubernetesPodOperator(
        task_id=stage,
        name=f"chimera-{stage}",
        namespace=pod.namespace,
        image=pod.image,
        cmds=list(config.orchestration.chimera_command),
        arguments=stage_arguments(stage, ["--xcom-file", "/airflow/xcom/return.json"]),
        env_vars=param_env(),
        secrets=[
            Secret("env", env_name, ref.secret, ref.key) for env_name, ref in pod.secret_env.items()
        ],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": pod.cpu_request, "memory": pod.memory_request},
            limits=limits or None,
        ),
        tolerations=[k8s.V1Toleration(**t) for t in pod.tolerations] if gpu else None,
        node_selector=pod.node_selector or None,
        service_account_name=pod.service_account,
        startup_timeout_seconds=pod.startup_timeout_s,
        do_xcom_push=True,
        on_finish_action="delete_pod",
        skip_on_exit_code=SKIP_EXIT_CODE,
        **kwargs,
    )


def stage_task(stage: str, config: ChimeraConfig, **kwargs: Any) -> BaseOperator:
    """The task for one stage, local subprocess or pod per ``orchestration.executor``."""
    orch = config.orchestration
    kwargs.setdefault("retries", orch.retries)
    kwargs.setdefault("trigger_rule", "none_failed")
    if orch.executor == "kubernetes":
        return _pod_task(stage, config, **kwargs)
    return ChimeraStageOperator(
        task_id=stage,
        stage=stage,
        command=orch.chimera_command,
        arguments=stage_arguments(stage),
        env=param_env(),
        minio_conn_id=orch.minio_conn_id,
        **kwargs,
    )
