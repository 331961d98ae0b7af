"""The report renders tables, real plots from records, side-by-side protocols, and HTML."""

from __future__ import annotations

from pathlib import Path

from chimera_core.evaluation.metrics import compute_metrics, paired_bootstrap
from chimera_core.evaluation.report import write_report
from tests.evaluation.test_metrics import _rec


def test_report_files(tmp_path: Path) -> None:
    base = [_rec(str(i), "yes", "no", "NO-GO", 0.2 + 0.01 * i) for i in range(6)]
    trained = [_rec(str(i), "yes", "yes", "GO", 0.5 + 0.01 * i) for i in range(6)]
    for r in trained:
        r.state["final_protocol"] = {"title": f"T{r.task_id}", "steps": ["a", "b"], "budget_usd": 9}
    metrics = {"champion (base)": compute_metrics(base), "candidate": compute_metrics(trained)}
    md = write_report(
        tmp_path,
        run_id="r1",
        metrics=metrics,
        comparisons=[paired_bootstrap(base, trained, "mean_reward")],
        records={"champion (base)": base, "candidate": trained},
        gathered_rewards=[0.1, 0.3, 0.2, 0.5],
        model_sets={"candidate": {"junior": "sft-r1"}},
    )
    text = md.read_text()
    assert "| mean final reward | 0.225 | 0.525 |" in text
    assert "![Reward over gathered rollouts](learning_curve.png)" in text
    assert "### task 0" in text and "**T0**" in text
    for png in ("learning_curve.png", "criteria.png", "confusion.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert "<table>" in (tmp_path / "report.html").read_text()


def test_no_data_means_no_plot(tmp_path: Path) -> None:
    rec = [_rec("1", "yes", "yes", "GO", 0.5)]
    md = write_report(
        tmp_path,
        run_id="r",
        metrics={"champion": compute_metrics(rec)},
        comparisons=[],
        records={"champion": rec},
        gathered_rewards=[],
        model_sets={},
    )
    assert "### Reward over gathered rollouts\n\n_no data_" in md.read_text()
    assert not (tmp_path / "learning_curve.png").exists()


def test_role_never_asked_is_na_not_zero(tmp_path: Path) -> None:
    asked = [_rec("1", "yes", "yes", "GO", 0.5)]
    asked[0].schema_valid = {"Supervisor": True}
    bandit = [_rec("1", "yes", "yes", "GO", 0.5)]  # the bandit chose: no supervisor output
    md = write_report(
        tmp_path,
        run_id="r",
        metrics={"base": compute_metrics(asked), "challenger": compute_metrics(bandit)},
        comparisons=[],
        records={"base": asked, "challenger": bandit},
        gathered_rewards=[],
        model_sets={},
    )
    assert "| schema-valid: Supervisor | 1.000 | n/a |" in md.read_text()
