"""Stage tasks: ``chimera stage NAME --run-id ...`` as a local subprocess or a Kubernetes pod.

How a stage's exit code becomes a task state (the CLI's contract, ``chimera_core.errors``):

- 0: success; the stage's result (outputs, metrics) is the task's XCom ``return_value``.
- ``SKIP_EXIT_CODE`` (99): the stage is not in the run's ``stages``: skipped. Tasks check the
  ``stages`` param themselves first and skip without starting a process; the exit code is the
  pods' and the CLI's own guard.
- 2 (``ChimeraError``: bad config, unknown profile, bad input): failed at once, no retries; a
  retry would fail the same way.
- anything else (1: a fault such as a server that died; a signal): failed and retried per the
  task's ``retries``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from chimera_airflow.selection import selected_stages
from chimera_airflow.summary import result_summary
from chimera_core.config import ChimeraConfig
from chimera_core.errors import SKIP_EXIT_CODE, ChimeraError

USER_ERROR_EXIT_CODE = ChimeraError.exit_code  # 2: the user's to fix, never retried
PARAM_ENV: dict[str, tuple[str, ...]] = {
    # DAG param -> environment overrides understood by chimera's config loader. Training steps
    # are options of an algorithm (stages.<stage>.options.<algorithm>): set for each built-in
    # algorithm of the stage, so the one the run's profile picks gets them (the other's options
    # are validated and unused).
    "gather_tasks": ("CHIMERA_STAGES__GATHER__N_TASKS",),
    "eval_tasks": ("CHIMERA_STAGES__EVALUATE__N_TASKS",),
    "sft_steps": ("CHIMERA_STAGES__SFT__OPTIONS__SFT__MAX_STEPS",),
    "ppo_steps": (
        "CHIMERA_STAGES__PPO__OPTIONS__GRPO__TOTAL_STEPS",
        "CHIMERA_STAGES__PPO__OPTIONS__VERL__TOTAL_STEPS",
    ),
    "model_set": ("CHIMERA_STAGES__EVALUATE__MODEL_SET",),
}
RUN_ID = "{{ run_id }}"
STAGES_PARAM = "{{ params.stages | join(',') }}"
PROFILE_PARAM = "{{ params.profile }}"
# Output of a running stage: lines ending in a carriage return (progress bars redrawn in place)
# are logged at most this often; lines ending in a newline always.
PROGRESS_EVERY_S = 10.0
ERROR_TAIL_LINES = 6  # the stage's last lines, repeated in the task's error message
KILL_GRACE_S = 20.0  # on_kill: SIGTERM, then SIGKILL after this long
# Terminal escape sequences (colours, cursor moves) some servers print: noise in a task log.
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


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
        for name, envs in PARAM_ENV.items()
        for env in envs
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


def skip_if_not_selected(stage: str, context: Mapping[str, Any]) -> None:
    """Raise AirflowSkipException when the run's ``stages`` param leaves ``stage`` out."""
    from airflow.sdk.exceptions import AirflowSkipException

    selected = selected_stages(context.get("params") or {})
    if selected is not None and stage not in selected:
        raise AirflowSkipException(
            f"stage {stage} is not in this run's stages ({', '.join(selected)}); not started"
        )


def raise_for_exit_code(stage: str, code: int, tail: Sequence[str]) -> None:
    """The task outcome of a finished stage process that did not succeed (see module doc)."""
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
    )

    if code == 0:
        return
    if code == SKIP_EXIT_CODE:
        raise AirflowSkipException(f"stage {stage} not selected for this run")
    last = "\n".join(line for line in tail if line.strip())
    detail = f":\n{last}" if last else ""
    if code == USER_ERROR_EXIT_CODE:
        raise AirflowFailException(
            f"chimera stage {stage} stopped on a user error (exit {code}), not retried: fix the "
            f"params or the profile and trigger a new run{detail}"
        )
    how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    raise AirflowException(
        f"chimera stage {stage} failed ({how}); retried if retries are left{detail}"
    )


class OutputStream:
    """A child's output, line by line as it comes, into a logging callback.

    Lines ending in a carriage return (a progress bar redrawn in place) are logged at most every
    ``progress_every_s``; lines ending in a newline always; terminal escape sequences (colours)
    are dropped. A line that looks like a JSON object is held until the next line arrives: the
    last one may be the stage's ``--json`` result, which the operator replaces with a summary
    (see ``ChimeraStageOperator``).
    """

    def __init__(
        self,
        log: Callable[[str], None],
        *,
        progress_every_s: float = PROGRESS_EVERY_S,
        tail_lines: int = ERROR_TAIL_LINES,
    ) -> None:
        self._log = log
        self._progress_every_s = progress_every_s
        self._last_progress = float("-inf")
        self._held: str | None = None
        self.tail: deque[str] = deque(maxlen=tail_lines)

    def feed(self, raw: str) -> None:
        """One line as read with ``newline=''`` (its ending kept)."""
        progress = raw.endswith("\r")
        line = ANSI_ESCAPE.sub("", raw.rstrip("\r\n"))
        if progress:
            now = time.monotonic()
            if now - self._last_progress < self._progress_every_s or not line.strip():
                return
            self._last_progress = now
        self._release()
        if line.startswith("{") and not progress:
            self._held = line
            return
        self._emit(line)

    def finish(self, result: Any = None) -> None:
        """End of output: log the held line unless it is ``result`` as JSON."""
        if self._held is not None and result is not None:
            try:
                if json.loads(self._held) == result:
                    self._held = None
            except ValueError:
                pass
        self._release()

    def _release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._emit(held)

    def _emit(self, line: str) -> None:
        self._log(line)
        self.tail.append(line)


class ChimeraStageOperator(BaseOperator):
    """Runs one stage with the local ``chimera`` CLI; returns the stage's result (XCom).

    The stage's output goes to the task log line by line while it runs; the log ends with a
    short summary of the result (its JSON is the XCom ``return_value``).
    """

    template_fields: Sequence[str] = ("arguments", "env")
    ui_color = "#e8f0fe"

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
        self._proc: subprocess.Popen[bytes] | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        skip_if_not_selected(self.stage, context)  # before any process starts
        env = {**os.environ, **(minio_env(self.minio_conn_id) if self.minio_conn_id else {})}
        env.update({k: v for k, v in self.env.items() if v != ""})
        env["PYTHONUNBUFFERED"] = "1"  # the stage's lines reach the log as they are printed
        env.setdefault("COLUMNS", "160")  # rich wraps at 80 columns on a pipe otherwise
        with tempfile.TemporaryDirectory() as tmp:
            xcom_file = Path(tmp) / "return.json"
            argv = [*self.command, *self.arguments, "--xcom-file", str(xcom_file)]
            self.log.info("running %s", shlex.join(argv))
            started = time.monotonic()
            out = OutputStream(lambda line: self.log.info("%s", line))
            code = self._run(argv, env, out)
            result: dict[str, Any] | None = None
            if code == 0:
                result = json.loads(xcom_file.read_text())
            out.finish(result)
            raise_for_exit_code(self.stage, code, out.tail)
        assert result is not None
        for line in result_summary(result, wall_s=time.monotonic() - started):
            self.log.info("%s", line)
        return result

    def _run(self, argv: Sequence[str], env: Mapping[str, str], out: OutputStream) -> int:
        """Run ``argv`` in its own process group, its stdout and stderr into ``out``."""
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # on_kill stops the stage and whatever it started
        )
        self._proc = proc
        try:
            assert proc.stdout is not None
            # newline="": keep each line's ending, so progress redraws ("\r") are told apart
            for raw in io.TextIOWrapper(
                proc.stdout, encoding="utf-8", errors="replace", newline=""
            ):
                out.feed(raw)
            return proc.wait()
        finally:
            if proc.poll() is None:  # the task is being stopped while the stage runs
                _stop_group(proc)
            self._proc = None

    def on_kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.log.info("stopping chimera stage %s (pid %d)", self.stage, self._proc.pid)
            _stop_group(self._proc)


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group of ``proc``; SIGKILL it if it is still there after grace_s."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@cache
def chimera_pod_operator() -> type[BaseOperator]:
    """KubernetesPodOperator with the stage exit codes (imported only for the pod executor)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException

    class ChimeraPodOperator(KubernetesPodOperator):  # type: ignore[misc]
        """One stage in a pod: skipped before the pod starts; exit 2 fails without retries."""

        def __init__(self, *, stage: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.stage = stage

        def execute(self, context: Any) -> Any:
            skip_if_not_selected(self.stage, context)
            return super().execute(context)

        def cleanup(self, pod: Any, remote_pod: Any, *args: Any, **kwargs: Any) -> None:
            try:
                super().cleanup(pod, remote_pod, *args, **kwargs)
            except AirflowSkipException:
                raise
            except AirflowException as exc:
                code = container_exit_code(remote_pod, self.base_container_name)
                if code is None:
                    raise
                raise_for_exit_code(self.stage, code, [str(exc)])
                raise

    return ChimeraPodOperator


def container_exit_code(remote_pod: Any, container: str) -> int | None:
    """The exit code of a pod's terminated container, or None."""
    statuses = getattr(getattr(remote_pod, "status", None), "container_statuses", None) or []
    for status in statuses:
        terminated = getattr(getattr(status, "state", None), "terminated", None)
        if status.name == container and terminated is not None:
            return int(terminated.exit_code)
    return None


def _pod_task(stage: str, config: ChimeraConfig, **kwargs: Any) -> BaseOperator:
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    pod = config.orchestration.pod
    gpu = stage in pod.gpu_stages and pod.gpus > 0
    limits = {"nvidia.com/gpu": str(pod.gpus)} if gpu else {}
    return chimera_pod_operator()(
        stage=stage,
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
    # An upstream stage left out of the run (skipped) must not skip the selected ones after it.
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
