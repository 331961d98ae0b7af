"""The whole self-improvement cycle under one run id: stages in order, one model server.

A library entry point: ``chimera pipeline run`` parses arguments and prints around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pydantic import BaseModel

from chimera_core.artifacts import open_store
from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ChimeraError
from chimera_core.model_registry import BASE, ModelRegistry
from chimera_core.plugins import check_config
from chimera_core.plugins.config_check import TRAINING_STAGES
from chimera_core.serving.model_sets import POLICY_ALIAS, ModelServing
from chimera_core.stages import StageResult, execute_stage, stage_fn

# Stages that train on the GPU: a CUDA vLLM server holding its share of GPU memory is stopped first.
GPU_TRAINING = frozenset({"sft", "ppo"})


def check_model_set(
    config: ChimeraConfig, registry: ModelRegistry, run_id: str, stages: Sequence[str]
) -> None:
    """Refuse a ``stages.evaluate.model_set`` evaluate could not resolve, before any stage runs.

    A version id must be registered already, or be one a training stage of this run registers.
    """
    name = config.stages.evaluate.model_set
    if name in ("candidate", "champion", BASE):
        return
    aliases = [*config.models, POLICY_ALIAS]
    registered = sorted({v for alias in aliases for v in registry.versions(alias)})
    this_run = [f"{stage}-{run_id}" for stage in stages if stage in TRAINING_STAGES]
    if name not in registered and name not in this_run:
        shown = ", ".join(registered[-5:]) or "none yet"
        raise ChimeraError(
            f"stages.evaluate.model_set (--model-set): unknown model set {name!r}; expected "
            f"candidate, champion, base or a registered version id (latest registered: {shown})"
        )


class PipelineResult(BaseModel):
    """The stages' results, in order, and the wall time of the whole run."""

    run_id: str
    results: list[StageResult]
    seconds: float


def run_pipeline(
    config: ChimeraConfig,
    stages: Sequence[str],
    run_id: str,
    *,
    on_stage: Callable[[int, str], None] | None = None,
    on_result: Callable[[StageResult], None] | None = None,
) -> PipelineResult:
    """Run stages in order; finished ones are reused, so a rerun with the run id resumes.

    ``on_stage(index, name)`` is called before each stage, ``on_result`` after it.
    """
    for name in stages:
        stage_fn(name)  # fail on a typo before any work
    check_config(config)
    results: list[StageResult] = []
    start = time.perf_counter()
    store = open_store(config.artifacts)
    registry = ModelRegistry.for_config(config, store)
    if "evaluate" in stages:  # a bad set found by evaluate would come after ingest moved CURRENT
        check_model_set(config, registry, run_id, stages)
    # One model server for the whole run: started by the first stage that needs it, a trained
    # adapter is loaded into it by name, and evaluate finds every set's adapters there.
    serving = ModelServing(config, registry, run_id=run_id)
    try:
        for i, name in enumerate(stages, start=1):
            if on_stage is not None:
                on_stage(i, name)
            if name in GPU_TRAINING and config.serving.gpu_memory_utilization:
                serving.close()  # the trainers need the GPU memory; evaluate starts it again
            try:
                result = execute_stage(
                    stage_fn(name), name, config, run_id, store=store, serving=serving
                )
            except ChimeraError as exc:
                wrapped = ChimeraError(
                    f"stage {name!r} failed: {exc}\n"
                    f"resume with: chimera pipeline run --run-id {run_id}"
                )
                wrapped.exit_code = exc.exit_code  # a fault (1) stays a fault
                raise wrapped from None
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        serving.close()
    return PipelineResult(run_id=run_id, results=results, seconds=time.perf_counter() - start)
