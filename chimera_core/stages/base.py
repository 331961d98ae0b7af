"""Stage plumbing: one entry point per stage, idempotent for a run id, artifacts in and out.

A stage's result (its output URIs and metrics) is stored at ``runs/<run_id>/<stage>/result.json``
once the stage finished; running the stage again for that run id returns it instead of redoing
the work. Stages hand each other URIs, never in-memory objects, so the same stage runs in
process, from Airflow, or in a GPU pod.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from chimera_core.artifacts import ArtifactStore, join_key, open_store
from chimera_core.artifacts.lock import StoreLock
from chimera_core.config.models import ChimeraConfig
from chimera_core.data.dataset import DATASET_PREFIX, current_version, load_task_dataset
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ArtifactNotFound, ChimeraError, DataError, StorageFault
from chimera_core.logs import ContextLogger, get_logger
from chimera_core.model_registry import ModelRegistry
from chimera_core.peak_rss import PeakRSS
from chimera_core.plugins import PluginRegistry, get_registry
from chimera_core.serving.model_sets import ModelServing


class StageResult(BaseModel):
    """What a finished stage produced."""

    stage: str
    run_id: str
    outputs: dict[str, str] = Field(default_factory=dict, description="Name -> artifact URI.")
    metrics: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = Field(0.0, description="Peak RSS of the stage's process tree (MiB).")
    finished_at: str = ""
    resumed: bool = Field(False, description="True when an earlier result was reused.")


@dataclass
class StageContext:
    """Everything a stage needs: config, run id, artifact store, plugins, a logger.

    ``plugins`` is the plugin registry; ``models`` the model registry (versions of each alias);
    ``force`` says the stage reruns over a finished result (--force).
    """

    config: ChimeraConfig
    run_id: str
    stage: str
    store: ArtifactStore
    plugins: PluginRegistry
    params: dict[str, Any] = field(default_factory=dict)
    serving: ModelServing | None = None
    force: bool = False
    log: ContextLogger = field(init=False)
    _dataset_version: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.log = get_logger("stage", run_id=self.run_id, stage=self.stage)

    @property
    def models(self) -> ModelRegistry:
        """The model registry on this run's artifact store (fetched versions cached locally)."""
        return ModelRegistry.for_config(self.config, self.store)

    def model_serving(self) -> ModelServing:
        """The vLLM server of this process (shared by a pipeline's stages); started on need."""
        if self.serving is None:
            self.serving = ModelServing(self.config, self.models, run_id=self.run_id)
        return self.serving

    def key(self, *parts: str) -> str:
        """A key under this stage's run directory."""
        return join_key("runs", self.run_id, self.stage, *parts)

    def has_result(self, stage: str) -> bool:
        """Whether an earlier stage of this run finished."""
        return self.store.exists(join_key("runs", self.run_id, stage, RESULT))

    def pin_key(self) -> str:
        """Where this run records the dataset version its stages use."""
        return join_key("runs", self.run_id, DATASET_PIN)

    def pin_dataset(self, version: str) -> None:
        """Make version this run's dataset (the ingest stage of the run does)."""
        self.store.put_json(self.pin_key(), self._pin_record(version))
        self._dataset_version = version

    def _pin_record(self, version: str) -> dict[str, str]:
        return {
            "version": version,
            "pinned_by": self.stage,
            "pinned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _pinned(self) -> str | None:
        try:
            return str(self.store.get_json(self.pin_key())["version"])
        except ArtifactNotFound:
            return None

    def dataset_version(self) -> str:
        """The dataset version this run is pinned to; the first stage to need one pins it.

        A run with an ingest stage uses what it ingested. A run without one takes the current
        dataset once and records it in ``runs/<run_id>/dataset.json``; every later stage of
        the run (a resumed one too) uses that version, never whatever became current since.
        """
        if self._dataset_version is not None:
            return self._dataset_version
        if self.has_result("ingest"):
            version = str(self.result_of("ingest").outputs["dataset_version"])
            if self._pinned() != version:  # a run ingested before pins were written
                self.store.put_json(self.pin_key(), self._pin_record(version))
        elif (pinned := self._pinned()) is not None:
            version = pinned
            self.log.info("dataset %s (pinned to this run in %s)", version, DATASET_PIN)
        else:
            try:
                version = current_version(self.store)
            except ChimeraError:
                raise ChimeraError(
                    f"run {self.run_id!r} has no ingest stage and no dataset was ingested yet: "
                    f"run `chimera ingest` or `chimera stage ingest --run-id {self.run_id}` first"
                ) from None
            record = json.dumps(self._pin_record(version), indent=2, sort_keys=True).encode()
            if self.store.create_exclusive(self.pin_key(), record):
                self.log.info(
                    "no ingest stage in this run; pinned the current dataset %s to it (%s)",
                    version,
                    self.store.uri(self.pin_key()),
                )
            else:  # a stage of this run running alongside pinned it first
                version = self._pinned() or version
        self._dataset_version = version
        return version

    def tasks(self) -> list[ResearchTask]:
        """Every task of this run's dataset (see ``dataset_version``)."""
        version = self.dataset_version()
        if not self.store.is_published(join_key(DATASET_PREFIX, version)):
            raise DataError(
                f"run {self.run_id!r} is pinned to dataset version {version!r} "
                f"({self.store.uri(self.pin_key())}), which is gone from "
                f"{self.store.uri(DATASET_PREFIX)}; ingest it again with the same source and "
                "split, or start a new run id"
            )
        return load_task_dataset(self.store, version)[1]

    def result_of(self, stage: str) -> StageResult:
        """The stored result of an earlier stage of this run (error if it has not run)."""
        key = join_key("runs", self.run_id, stage, RESULT)
        if not self.store.exists(key):
            raise ChimeraError(
                f"stage {self.stage!r} needs stage {stage!r} of run {self.run_id!r}; run it first"
            )
        return StageResult.model_validate(self.store.get_json(key))


StageFn = Callable[[StageContext], StageResult]
RESULT = "result.json"
LOCK = "lock.json"
DATASET_PIN = "dataset.json"


MAX_RUN_ID_CHARS = 128  # a key part and a version name (<stage>-<run id>) stay well in limits
RUN_ID_CHARS = "letters, digits, '.', '_' and '-'"


def safe_run_id(run_id: str) -> str:
    """A run id usable in keys and paths: other characters (Airflow's ':' and '+') become '_'."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id.strip()).strip("._")
    if not safe:
        raise ChimeraError(f"--run-id {run_id!r}: not a usable run id (use {RUN_ID_CHARS})")
    if len(safe) > MAX_RUN_ID_CHARS:
        raise ChimeraError(
            f"--run-id {run_id[:40]!r}...: {len(safe)} characters long, at most "
            f"{MAX_RUN_ID_CHARS} ({RUN_ID_CHARS})"
        )
    return safe


def new_run_id(prefix: str = "run") -> str:
    """A sortable, unique run id."""
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def execute_stage(
    fn: StageFn,
    name: str,
    config: ChimeraConfig,
    run_id: str,
    *,
    params: dict[str, Any] | None = None,
    force: bool = False,
    store: ArtifactStore | None = None,
    serving: ModelServing | None = None,
    wait: bool = False,
    lock_poll_s: float = 2.0,
) -> StageResult:
    """Run one stage for a run id, or return its stored result when it already finished.

    ``serving`` is a model server kept across stages (a pipeline's); without it the stage
    starts its own when it needs one and stops it when it ends.

    One process at a time runs a stage of a run: it holds ``runs/<run_id>/<stage>/lock.json``
    in the artifact store while it works. Another one finding the lock held fails at once
    (exit 2, naming the holder) or, with ``wait``, waits for it and then reuses its result.

    Before any work the store is probed with a small write (a read-only or full store fails
    here, not after minutes of rollouts), and temp files of writes killed long ago are removed.
    """
    store = store or open_store(config.artifacts)
    plugins = get_registry()
    ctx = StageContext(config, run_id, name, store, plugins, params or {}, serving, force)
    result_key = ctx.key(RESULT)
    if not force and store.exists(result_key):
        return _reused(ctx, result_key)
    try:
        store.check_writable()
    except StorageFault as exc:
        raise StorageFault(
            f"stage {name!r} of run {run_id!r} not started, nothing written: {exc}"
        ) from exc
    if stale := store.clean_stale_temp():
        ctx.log.warning(
            "removed %d temp file(s) of writes killed long ago (first: %s)", len(stale), stale[0]
        )
    lock = StoreLock(
        store,
        ctx.key(LOCK),
        f"run {run_id!r} stage {name!r}",
        hint=(
            f": another `chimera stage {name} --run-id {run_id}` or pipeline run is running it; "
            "use --wait to wait for it"
        ),
    )
    lock.acquire(wait=wait, poll_s=lock_poll_s)
    try:
        if not force and store.exists(result_key):  # finished while this one waited
            return _reused(ctx, result_key)
        return _run_stage(fn, ctx, result_key, serving)
    finally:
        lock.release()


def _reused(ctx: StageContext, result_key: str) -> StageResult:
    ctx.log.info("already finished; reusing %s", ctx.store.uri(result_key))
    done = StageResult.model_validate(ctx.store.get_json(result_key))
    return done.model_copy(update={"resumed": True})


def _run_stage(
    fn: StageFn, ctx: StageContext, result_key: str, serving: ModelServing | None
) -> StageResult:
    ctx.log.info("starting")
    start = time.perf_counter()
    try:
        with PeakRSS() as memory:
            result = fn(ctx)
    finally:
        if serving is None and ctx.serving is not None:
            ctx.serving.close()
    result = result.model_copy(
        update={
            "seconds": round(time.perf_counter() - start, 3),
            "peak_rss_mb": memory.peak_mb,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    ctx.store.put_json(result_key, result.model_dump(mode="json"))
    ctx.plugins.notify(
        "on_stage_finished", run_id=ctx.run_id, stage=ctx.stage, outputs=result.outputs
    )
    ctx.log.info("finished in %.1fs (peak RSS %.0f MiB)", result.seconds, result.peak_rss_mb)
    return result
