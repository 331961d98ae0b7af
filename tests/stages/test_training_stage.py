"""The training stages' contract: the configured adapter's data goes to the configured
algorithm with its validated options; what comes back is registered over the champion."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from safetensors.numpy import save_file

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.cli.main import main
from chimera_core.config import load_config
from chimera_core.data.dataset import publish_task_dataset
from chimera_core.data.rollouts import RolloutRecord, SupervisorLog
from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import ChimeraError, ConfigError, DataError
from chimera_core.model_registry import BASE
from chimera_core.plugins import (
    AlgorithmOptions,
    BanditSample,
    SFTExample,
    TracedRollout,
    TrainingData,
    TrainRequest,
    TrainResult,
    build_registry,
    check_config,
)
from chimera_core.plugins.manager import PluginInfo
from chimera_core.rollouts.storage import load_records, record_key, spans_key
from chimera_core.stages import bandit, board, sft
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
            # Full (tiny, finite) weights, no adapter: what a policy alias registers.
            save_file({"w": np.ones(2, np.float32)}, str(request.output_dir / "model.safetensors"))
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


class UnchangedAlgorithm(RecordingAlgorithm):
    """Saves the adapter it started from: what an RL trainer saves when every advantage is 0."""

    def train(self, request: TrainRequest) -> TrainResult:
        self.requests.append(request)
        if request.parent is not None:
            shutil.copytree(request.parent, request.output_dir)
        else:  # a fresh PEFT adapter: random A, zero B
            assert request.base_model is not None
            from chimera_plugins.algorithms.lora import LoraSpec, load_for_training, save_adapter

            model, _ = load_for_training(request.base_model, None, LoraSpec(4, 8))
            save_adapter(model, request.output_dir)
        metrics = {"steps": 2, "mean_rewards": [0.0, 0.0]}
        return TrainResult(output_dir=request.output_dir, metrics=metrics)


def test_an_adapter_training_did_not_change_is_not_registered_and_says_why(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", UnchangedAlgorithm())
    result = sft.run(ctx)
    assert ctx.models.versions("junior") == [] and "version" not in result.outputs
    assert result.metrics["skipped"] == (
        "no learning signal: the adapter 'recording' saved equals its start (base) (its "
        "samples' mean reward was 0 at all 2 steps); nothing registered, junior stays base"
    )


def test_a_continued_adapter_that_did_not_change_is_not_registered(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    trainer = RecordingAlgorithm()  # a new random adapter per call
    sft.run(_ctx(tmp_path, tiny_llama_dir, "r1", trainer))
    ctx = _ctx(tmp_path, tiny_llama_dir, "r2", UnchangedAlgorithm())
    ctx.models.promote("junior", "sft-r1", reason="test")
    result = sft.run(ctx)
    assert ctx.models.versions("junior") == ["sft-r1"]
    assert "equals its start (sft-r1)" in result.metrics["skipped"]
    # One that training changed, from the same start, is registered.
    assert sft.run(_ctx(tmp_path, tiny_llama_dir, "r3", trainer)).outputs["version"] == "sft-r3"


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
    # A plain rerun without a stored result (a crash, or a store that refused the result,
    # after registering) does not reuse the version an unfinished attempt left: it registers
    # what it trained beside it (tests/faults/test_disk_full.py has the whole story).
    ctx.force = False
    assert sft.run(ctx).outputs["version"] == "sft-r1-3"


# A gathered rollout whose spans file is gone (a partial copy of the store, a cleanup).
PREFIX = "runs/r1/gather/rollouts"


def _gathered(ctx: StageContext, task_ids: list[str], spans: bool) -> None:
    """Succeeded records with a supervisor choice under the run's gather prefix."""
    for task_id in task_ids:
        record = RolloutRecord(
            rollout_id=f"ro-{task_id}",
            run_id=ctx.run_id,
            stage="gather",
            task_id=task_id,
            status="succeeded",
            reward=1.0,
            expected_decision="yes",
            supervisor=SupervisorLog(hypotheses=["a", "b"], chosen=1, propensity=0.5),
            state={"research_goal": "Does X help?"},
        )
        ctx.store.put_json(record_key(PREFIX, task_id), record.model_dump(mode="json"))
        if spans:
            ctx.store.put_json(spans_key(PREFIX, task_id), [])
    gather = StageResult(stage="gather", run_id=ctx.run_id, outputs={"rollouts_key": PREFIX})
    ctx.store.put_json(f"runs/{ctx.run_id}/gather/result.json", gather.model_dump(mode="json"))


def test_an_llm_stage_whose_rollouts_lack_spans_says_so_and_trains_once_they_are_back(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    algorithm = RecordingAlgorithm()
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", algorithm)
    _gathered(ctx, ["t0"], spans=True)
    _gathered(ctx, ["t1"], spans=False)
    with pytest.raises(DataError) as err:
        sft.run(ctx)
    message = str(err.value)
    assert "task t1" in message and f"{PREFIX}/spans/t1.json" in message and "t0" not in message
    assert "chimera stage gather --run-id r1 --force" in message
    assert algorithm.requests == [] and ctx.models.versions("junior") == []
    ctx.store.put_json(spans_key(PREFIX, "t1"), [])  # the spans are back: the rerun trains
    assert sft.run(ctx).outputs["version"] == "sft-r1"


class RecordsAdapter:
    """Bandit samples from the records alone, as the supervisor's choices live there."""

    name = "records"

    def adapt(self, rollouts: list[TracedRollout], config: Any) -> TrainingData:
        samples = [
            BanditSample(
                task_id=r.record.task_id,
                goal="g",
                hypotheses=r.record.supervisor.hypotheses,
                chosen=r.record.supervisor.chosen or 0,
                propensity=r.record.supervisor.propensity or 1.0,
                reward=r.record.reward or 0.0,
            )
            for r in rollouts
        ]
        return TrainingData(bandit=samples, n_rollouts=len(rollouts))


def test_the_bandit_trains_from_the_records_when_spans_are_missing(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    algorithm = RecordingAlgorithm(save=False)
    extra = {"stages.trace_adapter": "records"}
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", algorithm, stage="bandit", extra=extra)
    ctx.plugins.add("adapter", RecordsAdapter(), TEST_PLUGIN)
    _gathered(ctx, ["t0", "t1"], spans=False)
    result = bandit.run(ctx)
    assert result.outputs["version"] == "bandit-r1"
    assert {x.task_id for x in algorithm.requests[-1].data.bandit} == {"t0", "t1"}


def test_the_builtin_adapter_gives_the_bandit_the_recorded_choices_without_spans(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    # The supervisor's choices are in the records: a lost spans file costs the bandit nothing.
    algorithm = RecordingAlgorithm(save=False)
    extra = {"stages.trace_adapter": "hierarchical"}
    ctx = _ctx(tmp_path, tiny_llama_dir, "r1", algorithm, stage="bandit", extra=extra)
    _gathered(ctx, ["t0"], spans=False)
    records = [TracedRollout(record=r, spans=[]) for r in load_records(ctx.store, PREFIX)]
    assert [
        x.task_id for x in ctx.plugins.adapter("hierarchical").adapt(records, ctx.config).bandit
    ] == ["t0"]
    assert bandit.run(ctx).outputs["version"] == "bandit-r1"
    assert [x.task_id for x in algorithm.requests[-1].data.bandit] == ["t0"]


def test_the_cli_exits_2_naming_the_missing_spans_and_stores_no_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalArtifactStore(tmp_path / ".chimera" / "artifacts")
    publish_task_dataset(store, TASKS, "test tasks", "seed")
    ctx = StageContext(load_config("local", environ={}), "r1", "sft", store, build_registry())
    _gathered(ctx, ["t0"], spans=False)
    assert main(["stage", "sft", "--run-id", "r1"]) == 2
    err = capsys.readouterr().err
    assert "task t0" in err and "spans/t0.json" in err and "Traceback" not in err
    assert not store.exists("runs/r1/sft/result.json") and list(store.list("models")) == []
