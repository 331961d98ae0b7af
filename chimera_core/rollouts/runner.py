"""Run tasks through the lab with Agent Lightning: store server, LLM proxy, n runner processes.

Each finished rollout is logged (W&B, metrics JSONL, the ``on_rollout_finished`` plugin hook)
and its spans saved next to its record as it completes. Tasks whose record already says
"succeeded" and whose spans were saved are not run again, so an interrupted (even killed) stage
resumes where it stopped. Rollouts whose record or spans the store refused (disk full, read-only)
fail the stage with a ``StorageFault`` before it publishes anything.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chimera_core.artifacts import ArtifactStore
from chimera_core.config.models import ChimeraConfig
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ArtifactError, FaultError, StorageFault
from chimera_core.lab.models import Endpoint
from chimera_core.logs import ContextLogger, get_logger
from chimera_core.plugins import check_config
from chimera_core.rollouts.agl_env import prepare_agl_environment
from chimera_core.rollouts.proxy import key_variables, proxy_model_list
from chimera_core.rollouts.storage import load_record, record_key, spans_key
from chimera_core.serving.vllm_server import free_port
from chimera_core.tracking import Tracker


def run_rollouts(
    config: ChimeraConfig,
    tasks: Sequence[ResearchTask],
    *,
    store: ArtifactStore,
    run_id: str,
    stage: str,
    prefix: str,
    endpoints: Mapping[str, Endpoint],
    explore: bool,
    tracker: Tracker,
    model_set: Mapping[str, str] | None = None,
    bandit_dir: str | None = None,
    bandit_version: str | None = None,
    n_runners: int | None = None,
) -> list[RolloutRecord]:
    """Run every task without a succeeded record; return all records (old and new)."""
    log = get_logger("rollouts", run_id=run_id, stage=stage)
    check_config(config)  # an unknown tool or reward fails before anything starts
    done = {t.id for t in tasks if _is_done(store, prefix, t.id, log)}
    pending = [t for t in tasks if t.id not in done]
    if done:
        log.info("resuming: %d of %d tasks already done", len(done), len(tasks))
    if pending:
        inputs = [
            {
                "run_id": run_id,
                "stage": stage,
                "task": t.model_dump(mode="json"),
                "record_key": record_key(prefix, t.id),
                "spans_key": spans_key(prefix, t.id),
                "explore": explore,
                "model_set": dict(model_set or {}),
                "bandit_dir": bandit_dir,
                "bandit_version": bandit_version,
            }
            for t in pending
        ]
        # A fresh process per session: LiteLLM's proxy and AgentOps keep process-global state,
        # so a second session in one process (evaluate runs two) would not start.
        session = multiprocessing.get_context("spawn").Process(
            target=_session,
            args=(
                config,
                inputs,
                dict(endpoints),
                n_runners or config.stages.gather.n_runners,
                (tracker.run_id, tracker.stage, tracker.jsonl_path),
            ),
            name=f"chimera-rollouts-{stage}",
        )
        session.start()
        session.join()
        if session.exitcode != 0:
            log.error("rollout session exited with code %s", session.exitcode)
    records = {t.id: load_record(store, record_key(prefix, t.id)) for t in tasks}
    if pending:
        _check_saved(store, prefix, stage, pending, records, session.exitcode, log)
    return [r for r in records.values() if r is not None]


def _is_done(store: ArtifactStore, prefix: str, task_id: str, log: ContextLogger) -> bool:
    """Whether a task's rollout is finished: its record says succeeded and its spans were saved.

    A succeeded record without spans (the store refused them, or the process saving them was
    killed) runs again: its traces are what the training stages learn from.
    """
    record = load_record(store, record_key(prefix, task_id))
    if record is None or record.status != "succeeded":
        return False
    if store.exists(spans_key(prefix, task_id)):
        return True
    log.warning("task %s: its record was saved but not its spans; running it again", task_id)
    return False


def _check_saved(
    store: ArtifactStore,
    prefix: str,
    stage: str,
    pending: Sequence[ResearchTask],
    records: Mapping[str, RolloutRecord | None],
    exitcode: int | None,
    log: ContextLogger,
) -> None:
    """Fail when rollouts of this session lost their record or spans to the store.

    A missing record is a runner that died (counted as a failed rollout) unless the store
    refuses writes now: then the record was lost to the store. Missing spans of a succeeded
    rollout are always lost traces. Either way a fault is raised naming the store, its error and
    the files not saved, before the stage publishes anything; a rerun runs those rollouts again.
    """
    no_record = [t.id for t in pending if records[t.id] is None]
    no_spans = [
        t.id
        for t in pending
        if (r := records[t.id]) is not None
        and r.status == "succeeded"
        and not store.exists(spans_key(prefix, t.id))
    ]
    if not no_record and not no_spans:
        return
    try:
        store.check_writable()
        fault = None
    except ArtifactError as exc:
        fault = exc
    if fault is None:  # the store takes writes: a missing record is a runner that died
        if no_record:
            log.error(
                "%d rollouts left no record (runner died?): %s", len(no_record), no_record[:5]
            )
        if not no_spans:
            return
        no_record = []
    lost = [f"task {t} (record {store.uri(record_key(prefix, t))})" for t in no_record]
    lost += [f"task {t} (spans {store.uri(spans_key(prefix, t))})" for t in no_spans]
    more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
    rerun = (
        "nothing was published; rerun the same command once the store takes writes again: "
        "the rollouts without a saved record and spans run again, the others are kept"
    )
    if fault is not None:
        raise StorageFault(
            f"stage {stage!r}: {len(lost)} rollout(s) lost their traces: {'; '.join(lost[:3])}"
            f"{more}; {fault}; {rerun}"
        ) from fault
    raise FaultError(
        f"stage {stage!r}: {len(lost)} rollout(s) lost their traces: {'; '.join(lost[:3])}"
        f"{more}; the store takes writes again, so it refused them for a while, or the rollout "
        f"session died (exit code {exitcode}): its log above names the error; {rerun}"
    )


def _session(
    config: ChimeraConfig,
    inputs: list[dict[str, Any]],
    endpoints: dict[str, Endpoint],
    n_runners: int,
    tracking: tuple[str, str, Path | None],
) -> None:
    """Entry point of the rollout session process."""
    from chimera_core.artifacts import open_store
    from chimera_core.logs import setup_logging

    # This process was spawned; Agent Lightning forks its runners (their targets are closures).
    multiprocessing.set_start_method("fork", force=True)
    setup_logging()
    store = open_store(config.artifacts)
    run_id, stage, jsonl_path = tracking
    with Tracker(config.tracking, run_id, f"{stage}-rollouts", jsonl_path) as tracker:
        _run_with_agl(config, inputs, store, endpoints, tracker, n_runners)


def _run_with_agl(
    config: ChimeraConfig,
    inputs: list[dict[str, Any]],
    store: ArtifactStore,
    endpoints: Mapping[str, Endpoint],
    tracker: Tracker,
    n_runners: int,
) -> None:
    """One Agent Lightning session over the inputs."""
    prepare_agl_environment()
    # The proxy's model list names each key by variable: Agent Lightning writes that list to a
    # temporary YAML file, and a key must never land in a file.
    os.environ.update(key_variables(endpoints))
    import agentlightning as agl
    from agentlightning.utils.server_launcher import PythonServerLauncherArgs

    from chimera_core.rollouts.agent import MedicalResearchAgent
    from chimera_core.rollouts.algorithm import RunInputs

    agl_store = agl.InMemoryLightningStore(thread_safe=True)
    proxy = agl.LLMProxy(
        launcher_args=PythonServerLauncherArgs(
            port=free_port(),
            host="127.0.0.1",
            access_host="127.0.0.1",
            launch_mode="thread",
            # /health would need auth and probes every backend at start.
            healthcheck_url="/health/liveliness",
            # LiteLLM takes ~10 s to start on 2 idle cores, far longer on a loaded machine.
            startup_timeout=300.0,
        ),
        model_list=proxy_model_list(config, endpoints),
        store=agl_store,
    )
    served = {alias: ep.served_model for alias, ep in config.models.items()}
    algorithm = RunInputs(inputs, served, store, tracker)
    tracer = agl.AgentOpsTracer()
    trainer = agl.Trainer(
        n_runners=min(n_runners, len(inputs)),
        strategy=agl.ClientServerExecutionStrategy(
            n_runners=min(n_runners, len(inputs)), server_host="127.0.0.1", server_port=free_port()
        ),
        store=agl_store,
        tracer=tracer,
        runner=agl.LitAgentRunner(tracer=tracer, poll_interval=0.5),
        adapter=agl.TracerTraceToTriplet(),
        llm_proxy=proxy,
        algorithm=algorithm,
    )
    previous = signal.getsignal(signal.SIGTERM)

    def _on_term(signum: int, frame: Any) -> None:
        # SIGTERM (Airflow, Kubernetes) would orphan the runner processes; the strategy shuts
        # them down cleanly on KeyboardInterrupt.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    try:
        trainer.dev(MedicalResearchAgent(config), train_dataset=inputs)
    finally:
        signal.signal(signal.SIGTERM, previous)
