"""The lab as an Agent Lightning ``LitAgent``: one rollout = one task through the lab, rewarded.

Each rollout binds every model alias to the LLM proxy's route for this rollout (so the proxy can
attribute spans), passes the tracer's LangChain handler so node names reach the spans, retries
faults with backoff, scores the final state with the reward plugins, and writes its
``RolloutRecord`` to the artifact store, whatever happened. One bad rollout never stops a stage;
a record the store would not take is logged, and the stage, finding it missing, fails.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from agentlightning import LitAgent
from pydantic import BaseModel, Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from chimera_core.artifacts import ArtifactStore, open_store
from chimera_core.config.models import ChimeraConfig
from chimera_core.data.rollouts import RoleUsage, RolloutRecord, SupervisorLog
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ChimeraError
from chimera_core.lab.graph import LabGraph, build_graph
from chimera_core.lab.models import ConfigModelProvider, Endpoint, shared_http_clients
from chimera_core.lab.prompts import shared_task_message
from chimera_core.lab.run import run_task
from chimera_core.lab.supervisor_policy import EpsilonExplore, LLMPolicy, SupervisorPolicy
from chimera_core.logs import get_logger
from chimera_core.plugins import RewardInput, get_registry
from chimera_core.rewards import compose_reward
from chimera_core.rollouts.policies import BanditSupervisorPolicy
from chimera_core.rollouts.storage import save_record
from chimera_core.training.bandit import LinearBanditPolicy


class RolloutInput(BaseModel):
    """What the algorithm enqueues for one rollout."""

    run_id: str
    stage: str
    task: ResearchTask
    record_key: str = Field(description="Artifact key the record is written to.")
    spans_key: str = Field(description="Artifact key the rollout's spans are written to.")
    explore: bool = Field(description="Supervisor explores (gather) or is greedy (evaluate).")
    model_set: dict[str, str] = Field(default_factory=dict)
    bandit_dir: str | None = Field(None, description="Local dir of the bandit policy to use.")
    bandit_version: str | None = None


TRAINED_RESOURCE = "main_llm"  # the one resource Agent Lightning's VERL publishes

R = TypeVar("R")


def with_retries(
    fn: Callable[[], R],
    *,
    max_attempts: int,
    backoff_s: float,
    on_fault: Callable[[int, str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[R | None, str | None, int]:
    """Run ``fn`` up to ``max_attempts`` times; returns (result, error, attempts made).

    Faults (server down, timeouts: any exception) are retried after ``backoff_s``, doubled each
    try, and each is passed to ``on_fault(attempt, error)``. A ``ChimeraError`` is a user error
    (config, names) that retrying cannot help: it ends the loop at once. The last error is
    returned, never raised: a failed rollout is recorded, it does not stop the stage.
    """
    retrying = Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait_exponential(multiplier=backoff_s, exp_base=2),
        retry=retry_if_exception(_is_fault),
        after=lambda state: on_fault(state.attempt_number, _describe(state)),
        sleep=sleep,
        reraise=True,
    )
    try:
        result, error = retrying(fn), None
    except Exception as exc:
        result, error = None, f"{type(exc).__name__}: {exc}"
    return result, error, retrying.statistics.get("attempt_number", 1)


def _is_fault(exc: BaseException) -> bool:
    """Worth another try: any error but a user error (and never Ctrl-C or an exit)."""
    return isinstance(exc, Exception) and not isinstance(exc, ChimeraError)


def _describe(state: RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome else None
    return f"{type(exc).__name__}: {exc}"


def _usage(state: dict[str, Any]) -> dict[str, RoleUsage]:
    out = {}
    for role, u in (state.get("usage") or {}).items():
        out[role] = RoleUsage(
            calls=int(u.get("calls", 0)),
            prompt_tokens=int(u.get("prompt_tokens", 0)),
            completion_tokens=int(u.get("completion_tokens", 0)),
            seconds=float(u.get("seconds", 0.0)),
        )
    return out


class MedicalResearchAgent(LitAgent[dict[str, Any]]):
    """Runs the research lab for one task per rollout."""

    def __init__(self, config: ChimeraConfig, fallback: dict[str, Endpoint] | None = None) -> None:
        super().__init__()
        self.config = config
        self.fallback = dict(fallback or {})  # endpoints of aliases no resource routes

    @cached_property
    def store(self) -> ArtifactStore:
        """The artifact store, opened once per runner process."""
        return open_store(self.config.artifacts)

    @cached_property
    def graph(self) -> LabGraph:
        """The compiled lab, built once per runner process (models and tools bind per rollout)."""
        return build_graph(self.config)

    @cached_property
    def _bandits(self) -> dict[str, LinearBanditPolicy]:
        return {}

    def supervisor_policy(self, spec: RolloutInput) -> SupervisorPolicy:
        """Bandit policy when one is registered, else the LLM; epsilon-exploring while gathering."""
        base: SupervisorPolicy = LLMPolicy()
        if spec.bandit_dir:
            if spec.bandit_dir not in self._bandits:
                self._bandits[spec.bandit_dir] = LinearBanditPolicy.load(Path(spec.bandit_dir))
            base = BanditSupervisorPolicy(
                self._bandits[spec.bandit_dir], spec.bandit_version or "bandit"
            )
        if spec.explore:
            return EpsilonExplore(base, self.config.stages.gather.explore_epsilon)
        return base

    def _judge_chat(self, provider: ConfigModelProvider) -> Any:
        from openai import OpenAI

        def chat(
            alias: str,
            messages: list[dict[str, str]],
            *,
            json_schema: dict[str, Any] | None = None,
        ) -> str:
            endpoint = self.config.models[alias]
            target = provider.endpoint(alias)
            client = OpenAI(
                base_url=target.base_url,
                api_key=target.api_key,
                timeout=endpoint.timeout_s,
                max_retries=endpoint.max_retries,
                http_client=shared_http_clients()[0],
            )
            reply = client.chat.completions.create(
                model=target.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=endpoint.sampling.temperature,
                max_tokens=endpoint.sampling.max_tokens,
                **_response_format(json_schema),
            )
            return reply.choices[0].message.content or ""

        return chat

    def rollout(self, task: dict[str, Any], resources: Any, rollout: Any) -> float | None:
        """One task through the lab; always writes a record, returns the final reward."""
        spec = RolloutInput.model_validate(task)
        log = get_logger("rollout", run_id=spec.run_id, stage=spec.stage)
        attempt_id = rollout.attempt.attempt_id
        endpoints = dict(self.fallback)
        trainable = {r.model for r in self.config.roles.values() if r.trainable}
        for alias, model in self.config.models.items():
            resource = resources.get(alias)
            # VERL publishes one trained resource; an alias served elsewhere (fallback) is not it.
            if resource is None and alias in trainable and alias not in self.fallback:
                resource = resources.get(TRAINED_RESOURCE)
            if resource is not None:  # the proxy's route for this rollout, by served name
                url = resource.get_base_url(rollout.rollout_id, attempt_id)
                endpoints[alias] = Endpoint(url, resource.model, model.api_key.get_secret_value())
        # Gathering samples the roles it trains more widely; evaluation stays as configured.
        provider = ConfigModelProvider(
            self.config.exploring() if spec.explore else self.config, endpoints
        )
        handler = self.get_tracer().get_langchain_handler()
        start = time.perf_counter()
        gather = self.config.stages.gather
        result, error, attempts = with_retries(
            lambda: dict(
                run_task(
                    spec.task,
                    self.config,
                    provider,
                    callbacks=[handler],
                    supervisor_policy=self.supervisor_policy(spec),
                    graph=self.graph,
                )
            ),
            max_attempts=gather.max_attempts,
            backoff_s=gather.retry_backoff_s,
            on_fault=lambda n, err: log.warning(
                "task %s attempt %d failed: %s", spec.task.id, n, err
            ),
        )
        state: dict[str, Any] = result or {}
        latency = time.perf_counter() - start
        record = self._record(spec, rollout.rollout_id, state, error, attempts, latency)
        if error is None:
            try:
                reward = compose_reward(
                    get_registry(),
                    RewardInput(
                        task=spec.task,
                        state=state,
                        config=self.config,
                        chat=self._judge_chat(provider),
                        shared_context=shared_task_message(spec.task.goal, spec.task.context),
                    ),
                )
                record.reward = reward.value
                record.reward_components = reward.components
                record.reward_breakdown = reward.breakdown
                record.reward_notes = reward.notes
                record.reward_failed = reward.failed
            except Exception as exc:  # e.g. an unknown reward plugin name: recorded, not fatal
                record.status = "failed"
                record.error = f"reward: {type(exc).__name__}: {exc}"
                log.error("%s\n%s", record.error, traceback.format_exc(limit=3))
        # A store that refuses the record is logged; the stage then finds it missing and fails
        # naming the store. The reward still serves an online trainer.
        save_record(self.store, spec.record_key, record)
        return record.reward

    def _record(
        self,
        spec: RolloutInput,
        rollout_id: str,
        state: dict[str, Any],
        error: str | None,
        attempts: int,
        latency: float,
    ) -> RolloutRecord:
        hypotheses = [str(h.get("hypothesis", "")) for h in state.get("initial_hypotheses") or []]
        return RolloutRecord(
            rollout_id=rollout_id,
            run_id=spec.run_id,
            stage=spec.stage,
            task_id=spec.task.id,
            split=spec.task.split,
            model_set=spec.model_set,
            status="failed" if error else "succeeded",
            error=error,
            attempts=attempts,
            expected_decision=spec.task.expected_decision,
            final_decision=state.get("final_decision"),
            final_answer=state.get("final_answer"),
            turns=int(state.get("turn_count", 0)),
            latency_s=round(latency, 3),
            usage=_usage(state),
            schema_valid=dict(state.get("schema_valid") or {}),
            truncated=dict(state.get("truncated") or {}),
            supervisor=SupervisorLog(
                hypotheses=hypotheses,
                chosen=state.get("selected_index"),
                propensity=state.get("supervisor_probability"),
                policy=str(state.get("supervisor_policy", "llm")),
            ),
            tool_failures=_tool_failures(state),
            state=_jsonable(state),
        )


def _tool_failures(state: dict[str, Any]) -> dict[str, int]:
    """Tool -> failed calls, from the state's tool errors (the gather sums them per tool)."""
    counts: dict[str, int] = {}
    for err in state.get("errors") or []:
        if err.get("kind") == "tool":
            name = str(err.get("name") or "unknown")
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _response_format(json_schema: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI structured output, enforced by vLLM's structured outputs."""
    if json_schema is None:
        return {}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": json_schema, "strict": False},
        }
    }


def _jsonable(state: dict[str, Any]) -> dict[str, Any]:
    """The final state without LangChain message objects (kept as role/content pairs)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key in {"messages", "scratchpads"}:
            continue
        out[key] = value
    out["messages"] = [
        {"role": getattr(m, "type", "?"), "name": getattr(m, "name", None), "content": m.content}
        for m in state.get("messages") or []
    ]
    return out
