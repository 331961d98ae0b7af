"""The training stages' contract: the configured adapter's data goes to the configured
algorithm with its validated options; what comes back is registered over the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.config import load_config
from chimera_core.data.dataset import publish_task_dataset
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ChimeraError, ConfigError
from chimera_core.model_registry import BASE
from chimera_core.plugins import (
    AlgorithmOptions,
    SFTExample,
    TracedRollout,
    TrainingData,
    TrainRequest,
    TrainResult,
    build_registry,
    check_config,
)
from chimera_core.plugins.manager import PluginInfo
from chimera_core.stages import board, sft
from chimera_core.stages.base import StageContext, StageResult
from tests.tiny_llama import profile_aliases, random_adapter

TEST_PLUGIN = PluginInfo("test", "tests", builtin=False)
TASKS = [
    ResearchTask(id=f"t{i}", goal="Does X help?", context="ctx", expected_decision="yes", split=s)
    for i, s in enumerate(["train", "train", "validation"])
]


class EchoAdapter:
    """Returns one SFT example per task it is given a record for (here: none), plus a marker."""

    name = "echo"

    def adapt(self, rollouts: list[TracedRollout], config: Any) -> TrainingData:
        example = SFTExample(role="r", task_id="t0", rollout_id="x", reward=1.0, messages=[])
        return TrainingData(sft=[example], n_rollouts=len(rollouts))


class RecordingOptions(AlgorithmOptions):
    steps: int = 1


class RecordingAlgorithm:
    """Saves a random adapter over the base; remembers each request."""

    name = "recording"
    options_model: ClassVar[type[AlgorithmOptions]] = RecordingOptions

    def __init__(self, save: bool = True) -> None:
        self.requests: list[TrainRequest] = []
        self.save = save

    def train(self, request: TrainRequest) -> TrainResult:
        self.requests.append(request)
        if not self.save:
            request.output_dir.mkdir(parents=True)
            (request.output_dir / "model.safetensors").write_bytes(b"full weights")
            return TrainResult(output_dir=request.output_dir)
        assert request.base_model is not None
        random_adapter(request.base_model, request.output_dir, seed=len(self.requests))
        return TrainResult(output_dir=request.output_dir, metrics={"steps": request.options.steps})


def _ctx(
    tmp_path: Path,
    base_dir: Path,
    run_id: str,
    algorithm: RecordingAlgorithm,
    stage: str = "sft",
    extra: dict[str, Any] | None = None,
    **options: Any,
) -> StageContext:
    overrides: dict[str, Any] = {
        f"models.{alias}.checkpoint": str(base_dir) for alias in profile_aliases()
    }
    overrides["serving.models_dir"] = str(tmp_path / "models")
    overrides["stages.trace_adapter"] = "echo"
    overrides[f"stages.{stage}"] = {"algorithm": "recording", "options": {"recording": options}}
    overrides.update(extra or {})
    config = load_config("local", overrides=overrides, environ={})
    plugins = build_registry(environ={"CHIMERA_PLUGINS": ""})
    plugins.add("adapter", EchoAdapter(), TEST_PLUGIN)
    plugins.add("algorithm", algorithm, TEST_PLUGIN)
    store = LocalArtifactStore(tmp_path / "store")
    if not store.exists("datasets/CURRENT.json"):
        publish_task_dataset(store, TASKS, "test tasks", "seed")
    ctx = StageContext(config, run_id, stage, store, plugins)
    gather = StageResult(stage="gather", run_id=run_id, outputs={"rollouts_key": "none"})
    store.put_json(f"runs/{run_id}/gather/result.json", gather.model_dump(mode="json"))
    return ctx


def test_the_stage_runs_the_configured_algorithm_on_the_configured_adapters_data(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    algorithm = RecordingAlgorithm()
    result = sft.run(_ctx(tmp_path, tiny_llama_dir, "r1", algorithm, steps=3))
    request = algorithm.requests[-1]
    assert request.data.sft[0].role == "r"  # the echo adapter's data, not the built-in's
    assert isinstance(request.options, RecordingOptions) and request.options.steps == 3
    assert set(request.tasks) == {"t0", "t1", "t2"}  # no ingest in this run: current dataset
    assert request.base_model == tiny_llama_dir.resolve() and request.parent is None
    assert result.outputs["version"] == "sft-r1"
    assert result.metrics == {"algorithm": "recording", "steps": 3}


def test_a_new_version_continues_the_champions_adapter(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    algorithm = RecordingAlgorithm()
    sft.run(_ctx(tmp_path, tiny_llama_dir, "r1", algorithm))
    ctx = _ctx(tmp_path, tiny_llama_dir, "r2", algorithm)
    ctx.models.promote("junior", "sft-r1", reason="test")
    assert sft.run(ctx).outputs["version"] == "sft-r2"
    parent = algorithm.requests[-1].parent
    assert parent is not None
    assert (parent / "adapter_model.safetensors").read_bytes() == (
        ctx.models.fetch("junior", "sft-r1") / "adapter_model.safetensors"
    ).read_bytes()
    assert ctx.models.get("junior", "sft-r2").parent == "sft-r1"
    assert ctx.models.champion("junior") == "sft-r1" != BASE


def test_an_algorithm_that_saved_no_adapter_registers_nothing(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", RecordingAlgorithm(save=False))
    with pytest.raises(ChimeraError, match="algorithm 'recording' saved no LoRA adapter"):
        sft.run(ctx)
    assert ctx.models.versions("junior") == []


def test_unknown_algorithm_options_are_config_errors_naming_the_key(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", RecordingAlgorithm(), stepz=3)
    with pytest.raises(ConfigError) as err:
        check_config(ctx.config, ctx.plugins)
    assert any(
        p.startswith("stages.sft.options.recording.stepz:") and "'recording'" in p
        for p in err.value.problems
    )


def test_the_board_stage_trains_the_trainable_pi_alias_alone(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    algorithm = RecordingAlgorithm()
    result = board.run(_ctx(tmp_path, tiny_llama_dir, "r1", algorithm, stage="board"))
    request = algorithm.requests[-1]
    assert request.alias == "pi" and request.roles() == {"PrincipalInvestigator"}
    assert result.outputs["alias"] == "pi" and result.outputs["version"] == "board-r1"


def test_the_board_stage_skips_when_no_board_role_is_trainable(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    algorithm = RecordingAlgorithm()
    extra = {"roles.PrincipalInvestigator.trainable": False}
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", algorithm, stage="board", extra=extra)
    result = board.run(ctx)
    assert algorithm.requests == [] and "no board role is trainable" in result.metrics["skipped"]
    assert ctx.models.versions("pi") == []


def test_an_untrained_role_on_a_trained_alias_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"roles\.SafetyOfficer\.model: 'pi' is the alias"):
        load_config("local", environ={}, overrides={"roles.SafetyOfficer.model": "pi"})


def test_a_forced_rerun_registers_what_it_trained_as_a_new_version_and_names_it(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    algorithm = RecordingAlgorithm()
    first = sft.run(_ctx(tmp_path, tiny_llama_dir, "r1", algorithm))
    assert first.outputs["version"] == "sft-r1"
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", algorithm)
    old = (ctx.models.fetch("junior", "sft-r1") / "adapter_model.safetensors").read_bytes()
    ctx.force = True
    forced = sft.run(ctx)
    # The earlier version is immutable (it may be served or champion): the new one sits beside.
    assert forced.outputs["version"] == "sft-r1-2"
    assert forced.outputs["model"] == ctx.models.get("junior", "sft-r1-2").uri
    new = (ctx.models.fetch("junior", "sft-r1-2") / "adapter_model.safetensors").read_bytes()
    assert new != old
    assert (ctx.models.fetch("junior", "sft-r1") / "adapter_model.safetensors").read_bytes() == old
    assert ctx.models.model_set("run:r1", ["junior"]) == {"junior": "sft-r1-2"}
    ctx.force = False  # a plain rerun (a crash before the result was written) stays idempotent
    assert sft.run(ctx).outputs["version"] == "sft-r1"
