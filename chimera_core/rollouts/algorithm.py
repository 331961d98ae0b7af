"""A one-pass Agent Lightning algorithm: enqueue every input, log each rollout as it finishes.

Each finished rollout's spans are saved next to its record at once (and again at the end, for
spans that arrive late): the in-memory store dies with the process, and a killed stage must
keep every rollout it finished. Import it after ``prepare_agl_environment()`` (the runner does).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import agentlightning as agl
from agentlightning.algorithm.utils import with_llm_proxy, with_store
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from chimera_core.artifacts import ArtifactStore
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.errors import ArtifactError
from chimera_core.logs import get_logger
from chimera_core.plugins import get_registry
from chimera_core.rollouts.storage import load_record
from chimera_core.tracking import Tracker

POLL_S = 0.5
log = get_logger("rollouts")


class RunInputs(agl.FastAlgorithm):
    """Runs each input once; the records are written by the agent, logged here."""

    def __init__(
        self,
        inputs: list[dict[str, Any]],
        served: dict[str, str],
        store: ArtifactStore,
        tracker: Tracker,
    ) -> None:
        super().__init__()
        self.inputs = inputs
        self.served = served
        self.artifacts = store
        self.tracker = tracker
        self.spans_key_of: dict[str, str] = {}
        self.unsaved: dict[str, str] = {}  # spans key -> why the store refused it

    @with_llm_proxy()
    @with_store
    async def run(
        self, store: Any, llm_proxy: Any, train_dataset: Any = None, val_dataset: Any = None
    ) -> None:
        resources = {
            alias: llm_proxy.as_resource(model=name) for alias, name in self.served.items()
        }
        update = await store.add_resources(resources)
        requests = [
            agl.EnqueueRolloutRequest(input=x, mode="train", resources_id=update.resources_id)
            for x in self.inputs
        ]
        rollouts = await store.enqueue_many_rollouts(requests)
        pairs = list(zip(rollouts, self.inputs, strict=True))
        self.spans_key_of = {r.rollout_id: x["spans_key"] for r, x in pairs}
        await self._watch(store, {r.rollout_id: x["record_key"] for r, x in pairs})
        for rollout_id in self.spans_key_of:
            await self._save_spans(store, rollout_id)

    async def _save_spans(self, store: Any, rollout_id: str) -> None:
        """Save a rollout's spans; a store that refuses them is logged, and the run goes on.

        The stage finds the spans missing afterwards and fails naming the store (so the
        rollout runs again on a rerun); meanwhile the other rollouts finish and are kept.
        """
        spans = await store.query_spans(rollout_id, "latest")
        payload = [s.model_dump(mode="json") for s in spans]
        key = self.spans_key_of[rollout_id]
        try:
            self.artifacts.put_bytes(key, json.dumps(payload).encode())
        except (ArtifactError, OSError) as exc:
            self.unsaved[key] = str(exc)
            log.error("the spans of rollout %s were not saved: %s", rollout_id, exc)
        else:
            self.unsaved.pop(key, None)

    async def _watch(self, store: Any, key_of: dict[str, str]) -> None:
        registry = get_registry()
        finished: set[str] = set()
        rewards: list[float] = []
        columns = (
            TextColumn("[bold]rollouts"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("mean reward {task.fields[reward]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns) as progress:
            bar = progress.add_task("rollouts", total=len(key_of), reward="-")
            while len(finished) < len(key_of):
                done = await store.query_rollouts(
                    rollout_id_in=list(key_of), status_in=["succeeded", "failed", "cancelled"]
                )
                for rollout in done:
                    if rollout.rollout_id in finished:
                        continue
                    finished.add(rollout.rollout_id)
                    await self._save_spans(store, rollout.rollout_id)
                    record = load_record(self.artifacts, key_of[rollout.rollout_id])
                    if record is not None:
                        rewards.append(record.reward or 0.0)
                        self._log(registry, record, len(finished))
                        # A plain line per rollout: what a log without a terminal (Airflow's
                        # task log, a pod's) shows while the bar above cannot redraw.
                        log.info(
                            "rollout %d/%d: task %s %s, reward %.3f",
                            len(finished),
                            len(key_of),
                            record.task_id,
                            record.status,
                            record.reward or 0.0,
                        )
                    progress.update(
                        bar,
                        completed=len(finished),
                        reward=f"{sum(rewards) / max(1, len(rewards)):.3f}",
                    )
                await asyncio.sleep(POLL_S)

    def _log(self, registry: Any, record: RolloutRecord, step: int) -> None:
        metrics: dict[str, Any] = {
            "rollout/reward": record.reward or 0.0,
            "rollout/succeeded": float(record.status == "succeeded"),
            "rollout/turns": record.turns,
            "rollout/latency_s": record.latency_s,
            "rollout/tokens": record.total_tokens,
            "task_id": record.task_id,
        }
        metrics.update({f"reward/{k}": v for k, v in record.reward_components.items()})
        metrics.update({f"breakdown/{k}": v for k, v in record.reward_breakdown.items()})
        self.tracker.log(metrics, step=step)
        registry.notify(
            "on_rollout_finished",
            run_id=record.run_id,
            task_id=record.task_id,
            reward=record.reward or 0.0,
            record=record.model_dump(mode="json"),
        )
