"""The evaluate stage's report: what it ran on, the reward's parts, training and stage costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chimera_core.artifacts import LocalArtifactStore
from chimera_core.config import load_config
from chimera_core.data.dataset import publish_task_dataset
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.data.tasks import ResearchTask
from chimera_core.evaluation.metrics import COMPARED
from chimera_core.plugins import get_registry
from chimera_core.rollouts.storage import record_key
from chimera_core.stages import STAGES, evaluate
from chimera_core.stages.base import StageContext, StageResult
from tests.evaluation.test_metrics import _rec

RUN = "r9"


def test_earlier_stages_are_the_pipeline_stages_before_evaluate() -> None:
    assert tuple(STAGES)[: tuple(STAGES).index("evaluate")] == evaluate.EARLIER_STAGES
    assert set(evaluate.TRAINED_TIERS) <= set(evaluate.EARLIER_STAGES)


def _put_result(store: LocalArtifactStore, stage: str, **fields: Any) -> None:
    result = StageResult(stage=stage, run_id=RUN, **fields)
    store.put_json(f"runs/{RUN}/{stage}/result.json", result.model_dump(mode="json"))


def _fake_rollouts(
    ctx: StageContext, tasks: list[ResearchTask], model_set: dict[str, str], **kwargs: Any
) -> tuple[list[RolloutRecord], None]:
    # The trained junior answers every task right; the base set says "yes" to everything.
    trained = model_set.get("junior") != "base"
    records = []
    for t in tasks:
        answer = t.expected_decision if trained else "yes"
        rec = _rec(t.id, t.expected_decision, answer, None, 0.8 if trained else 0.4)
        rec.reward_components = {"llm_judge": 0.6, "decision_alignment": float(trained)}
        records.append(rec)
    return records, None


@pytest.fixture
def ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[StageResult, Path]:
    """evaluate.run after ingest-less gather, sft (trained) and board (skipped) of run r9."""
    monkeypatch.chdir(tmp_path)  # the stage keeps a local copy under .chimera/reports
    monkeypatch.setattr(evaluate, "served_rollouts", _fake_rollouts)
    labels = ["yes", "no", "maybe"]
    tasks = [
        ResearchTask(
            id=f"{split[0]}{i}", goal="g", context="c", expected_decision=labels[i % 3], split=split
        )
        for split in ("train", "validation")
        for i in range(6)
    ]
    overrides = {
        "serving.models_dir": str(tmp_path / "models"),
        "stages.evaluate.n_tasks": 5,
        "stages.evaluate.bootstrap_samples": 200,
    }
    config = load_config("local", overrides=overrides, environ={})
    store = LocalArtifactStore(tmp_path / "store")
    publish_task_dataset(store, tasks, "test tasks", "seed")
    for i, t in enumerate(tasks[:4]):  # four gathered training rollouts
        rec = _rec(t.id, t.expected_decision, "yes", "GO", 0.1 * i)
        store.put_json(record_key(f"runs/{RUN}/gather/rollouts", t.id), rec.model_dump(mode="json"))
    _put_result(
        store,
        "gather",
        outputs={"rollouts_key": f"runs/{RUN}/gather/rollouts"},
        seconds=12.5,
        peak_rss_mb=900.0,
    )
    _put_result(
        store,
        "sft",
        outputs={"alias": "junior", "version": f"sft-{RUN}"},
        metrics={"algorithm": "sft", "losses": [1.5, 1.0, 0.75]},
        seconds=30.0,
        peak_rss_mb=2000,
    )
    _put_result(store, "board", metrics={"skipped": "no board role is trainable"}, seconds=0.1)
    ctx = StageContext(config, RUN, "evaluate", store, get_registry())
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "adapter_config.json").write_text("{}")
    ctx.models.register(
        "junior",
        weights,
        parent="base",
        stage="sft",
        run_id=RUN,
        task_ids=[t.id for t in tasks[:4]],
    )
    return evaluate.run(ctx), tmp_path / ".chimera" / "reports" / RUN


def test_evaluate_reports_what_it_ran_on(ran: tuple[StageResult, Path]) -> None:
    result, report = ran
    assert result.metrics["split"] == "validation" and result.metrics["n_tasks"] == 5
    assert result.metrics["n_gathered"] == 4
    assert result.metrics["dataset_version"]
    text = (report / "report.md").read_text()
    assert (
        f"- held-out tasks: **5** of split `validation`, dataset "
        f"`{result.metrics['dataset_version']}`"
    ) in text
    assert "- training rollouts gathered by this run: **4**" in text
    assert "| reward: llm_judge (weight 0.5) | 0.600 | 0.600 |" in text
    assert (
        "| reward: decision_alignment (weight 0.3, trains the decision maker) | 0.000 | 1.000 |"
    ) in text
    assert "`decision_alignment`; alignment mode `original`" in text
    saved = json.loads((report / "metrics.json").read_text())
    assert saved["setup"]["dataset_version"] == result.metrics["dataset_version"]


def test_evaluate_compares_macro_f1_pairwise(ran: tuple[StageResult, Path]) -> None:
    result, _ = ran
    comparisons = {c["metric"]: c for c in result.metrics["comparisons"]}
    components = [f"reward:{name}" for name in ("llm_judge", "decision_alignment")]
    assert list(comparisons)[: len(COMPARED)] == list(COMPARED)
    assert set(comparisons) - set(COMPARED) >= set(components)  # each weighted component
    label = comparisons["reward:decision_alignment"]
    assert label["n_pairs"] == 5 and label["delta"] == pytest.approx(1.0)
    f1 = comparisons["macro_f1"]
    assert f1["n_pairs"] == 5 and f1["challenger"] == 1.0
    assert f1["baseline"] == pytest.approx(result.metrics["base.macro_f1"])
    assert f1["delta"] > 0


def test_evaluate_reports_training_curves_and_stage_costs(ran: tuple[StageResult, Path]) -> None:
    _, report = ran
    text = (report / "report.md").read_text()
    title = "sft stage: junior tier (alias junior), algorithm sft"
    assert f"![{title}](training_sft.png)" in text
    assert (report / "training_sft.png").read_bytes()[:4] == b"\x89PNG"
    assert "### Training: board stage: board tier\n\n_skipped: no board role is trainable_" in text
    assert not (report / "training_board.png").exists()
    assert "| gather | 12.5 | 900 |" in text and "| sft | 30.0 | 2000 |" in text
    assert "| board | 0.1 | 0 |" in text
    assert "| ingest |" not in text and "| ppo |" not in text  # this run did not run them
