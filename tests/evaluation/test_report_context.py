"""The report states what was evaluated, the reward's parts, training curves and stage costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chimera_core.evaluation.metrics import COMPARED, compute_metrics, paired_bootstrap
from chimera_core.evaluation.report import EvalSetup, StageRun, write_report
from tests.evaluation.test_metrics import _rec

SETUP = EvalSetup(
    split="test",
    dataset_version="ds-20250101-abc",
    n_tasks=6,
    n_gathered=40,
    reward_weights={"llm_judge": 0.5, "decision_alignment": 0.3, "protocol_rubric": 0.2},
    decision_reward="decision_alignment",
    alignment_mode="original",
)


def _report(tmp_path: Path, **kwargs: Any) -> str:
    base = [_rec(str(i), "yes", "no", "NO-GO", 0.2 + 0.01 * i) for i in range(6)]
    trained = [_rec(str(i), "yes", "yes", "GO", 0.5 + 0.01 * i) for i in range(6)]
    for r in trained:
        r.reward_components = {"llm_judge": 0.4, "decision_alignment": 1.0}
    return write_report(
        tmp_path,
        run_id="r1",
        metrics={"base": compute_metrics(base), "challenger": compute_metrics(trained)},
        comparisons=[paired_bootstrap(base, trained, m, samples=200) for m in COMPARED],
        records={"base": base, "challenger": trained},
        gathered_rewards=[0.1, 0.3],
        model_sets={"challenger": {"junior": "sft-r1"}},
        **kwargs,
    ).read_text()


def test_the_top_states_split_dataset_tasks_and_gathered_rollouts(tmp_path: Path) -> None:
    text = _report(tmp_path, setup=SETUP)
    head = text.split("## Metrics")[0]
    assert "- held-out tasks: **6** of split `test`, dataset `ds-20250101-abc`" in head
    assert "- training rollouts gathered by this run: **40**" in head
    weights = "llm_judge (0.5), decision_alignment (0.3), protocol_rubric (0.2)"
    assert f"- final reward: weighted mean of {weights}" in head
    assert (
        "- the decision maker's training reward (rewards.decision_reward, what the board stage "
        "trains the PI on): `decision_alignment`; alignment mode `original` (GO↔yes, NO-GO↔no)"
    ) in head
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["setup"]["split"] == "test" and saved["setup"]["n_tasks"] == 6
    assert saved["setup"]["n_gathered"] == 40
    assert saved["setup"]["reward_weights"]["llm_judge"] == 0.5
    ungathered = _report(tmp_path, setup=SETUP.model_copy(update={"n_gathered": None}))
    assert "- training rollouts gathered by this run: none (no gather stage)" in ungathered


def test_reward_components_apart_with_their_weights(tmp_path: Path) -> None:
    text = _report(tmp_path, setup=SETUP)
    # Base rollouts carry the fixture's judge-only components; the challenger's add the label.
    assert "| reward: llm_judge (weight 0.5) | 0.225 | 0.400 |" in text
    assert (
        "| reward: decision_alignment (weight 0.3, trains the decision maker) | n/a | 1.000 |"
        in text
    )
    assert "| reward: protocol_rubric (weight 0.2) | n/a | n/a |" in text
    # Without a setup the components still show, their weights unknown.
    assert "| reward: llm_judge (weight n/a) |" in _report(tmp_path)


def test_macro_f1_is_compared(tmp_path: Path) -> None:
    text = _report(tmp_path)
    (row,) = [line for line in text.splitlines() if line.startswith("| macro_f1 | 6 |")]
    assert "| 0.000 | 1.000 | +1.000 |" in row
    assert "_macro_f1: recomputed on each bootstrap resample of the tasks;" in text
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert [c["metric"] for c in saved["comparisons"]] == list(COMPARED)


def _stages() -> list[StageRun]:
    return [
        StageRun(stage="ingest", seconds=2.5, peak_rss_mb=310.2),
        StageRun(stage="gather", seconds=61.04, peak_rss_mb=1200.0),
        StageRun(
            stage="sft",
            seconds=30.0,
            peak_rss_mb=2048.0,
            tier="junior",
            alias="junior",
            metrics={"algorithm": "sft", "losses": [2.1, 1.7, 1.2, 1.1]},
        ),
        StageRun(
            stage="ppo",
            seconds=40.0,
            peak_rss_mb=2500.0,
            tier="senior",
            alias="senior",
            metrics={"algorithm": "grpo", "losses": [0.1, 0.0], "mean_rewards": [0.4, 0.6]},
        ),
        StageRun(
            stage="board",
            seconds=0.2,
            peak_rss_mb=300.0,
            tier="board",
            metrics={"skipped": "no board role is trainable (roles.<name>.trainable)"},
        ),
    ]


def test_training_curves_from_measured_steps_only(tmp_path: Path) -> None:
    text = _report(tmp_path, setup=SETUP, stages=_stages())
    assert "### Training: sft stage: junior tier (alias junior), algorithm sft" in text
    assert "![sft stage: junior tier (alias junior), algorithm sft](training_sft.png)" in text
    assert "![ppo stage: senior tier (alias senior), algorithm grpo](training_ppo.png)" in text
    for png in ("training_sft.png", "training_ppo.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert (
        "### Training: board stage: board tier\n\n"
        "_skipped: no board role is trainable (roles.<name>.trainable)_"
    ) in text
    assert not (tmp_path / "training_board.png").exists()
    training = json.loads((tmp_path / "metrics.json").read_text())["training"]
    assert training == {
        "sft": {"plot": "training_sft.png"},
        "ppo": {"plot": "training_ppo.png"},
        "board": {"skipped": "no board role is trainable (roles.<name>.trainable)"},
    }


@pytest.mark.parametrize(
    "metrics",
    [{"algorithm": "verl"}, {"losses": []}, {"losses": [1.0, "nan?"]}, {"losses": "1.0"}],
)
def test_a_stage_without_steps_is_skipped_not_drawn(
    tmp_path: Path, metrics: dict[str, Any]
) -> None:
    run = StageRun(stage="ppo", seconds=1, peak_rss_mb=1, tier="senior", metrics=metrics)
    text = _report(tmp_path, stages=[run])
    assert "_skipped: no per-step loss or reward was recorded_" in text
    assert not (tmp_path / "training_ppo.png").exists()


def test_stage_wall_time_and_peak_memory(tmp_path: Path) -> None:
    text = _report(tmp_path, stages=_stages())
    assert "| stage | wall time (s) | peak RSS (MiB) |" in text
    assert "| ingest | 2.5 | 310 |" in text and "| gather | 61.0 | 1200 |" in text
    assert "| board | 0.2 | 300 |" in text
    stages = json.loads((tmp_path / "metrics.json").read_text())["stages"]
    assert stages[1] == {"stage": "gather", "seconds": 61.04, "peak_rss_mb": 1200.0}
    assert "## Earlier stages of this run" not in _report(tmp_path)


def test_a_stage_that_learned_nothing_is_drawn_and_says_so(tmp_path: Path) -> None:
    reason = "no learning signal: the adapter 'grpo' saved equals its start (base)"
    metrics = {"algorithm": "grpo", "losses": [0.0, 0.0], "mean_rewards": [0.0, 0.0]}
    run = StageRun(
        stage="ppo",
        seconds=1,
        peak_rss_mb=1,
        tier="senior",
        alias="senior",
        metrics={**metrics, "skipped": reason},
    )
    text = _report(tmp_path, stages=[run])
    assert f"](training_ppo.png)\n_skipped: {reason}_" in text
    assert (tmp_path / "training_ppo.png").read_bytes()[:4] == b"\x89PNG"
    training = json.loads((tmp_path / "metrics.json").read_text())["training"]
    assert training == {"ppo": {"plot": "training_ppo.png", "skipped": reason}}
