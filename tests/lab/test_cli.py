"""``chimera run-task`` against an OpenAI-compatible endpoint, and ``chimera graph``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chimera_core.cli.main import main
from chimera_core.config import load_config
from chimera_core.data.agent_outputs import SupervisorChoice, decoding_budget
from chimera_core.plugins import manager
from tests.lab.fake_openai import FakeOpenAI, fake_openai_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def with_tool_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh registry of the built-in plugins (tools included)."""
    manager.get_registry.cache_clear()
    yield
    manager.get_registry.cache_clear()


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with fake_openai_server() as fake:
        yield fake


def _profile(tmp_path: Path, url: str, data_file: Path) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    for alias in data["models"].values():
        alias.update(backend="openai", base_url=url, tool_calls=True)
    data["data"] = {"source": "file", "file": str(data_file)}
    data["artifacts"] = {"backend": "local", "local_root": str(tmp_path / "artifacts")}
    data["serving"] = {"models_dir": str(tmp_path / "models")}
    path = tmp_path / "fake.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_task_by_pmid_prints_panels_and_writes_the_state(
    tmp_path: Path,
    server: FakeOpenAI,
    pubmedqa_file: Path,
    with_tool_plugins: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "state.json"
    profile = _profile(tmp_path, server.url, pubmedqa_file)
    code = main(["run-task", "--task-id", "21645374", "--profile", str(profile), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    for text in ("Geneticist", "Supervisor", "PrincipalInvestigator", "final protocol", "GO"):
        assert text in printed
    assert "LLM usage" in printed and "total" in printed
    record = json.loads(out.read_text())
    state = record["state"]
    assert record["task"]["id"] == "21645374" and "expected_decision" not in record["task"]
    assert state["final_decision"] == "GO" and state["final_answer"] == "yes"
    assert state["final_protocol"]["title"] == "Cohort study of X and Y"
    assert state["usage"]["Geneticist"] == {
        "calls": 1,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "seconds": pytest.approx(state["usage"]["Geneticist"]["seconds"]),
    }
    assert len(server.requests) == 9
    # Evidence from the offline PubMed index reached the prompts, the task's own record did not.
    geneticist = next(r for r in server.requests if r["messages"][-1].get("name") == "Geneticist")
    prompt = geneticist["messages"][-1]["content"]
    assert "[pubmed_search] PubMed (offline PubMedQA index)" in prompt
    assert "PMID 21645374" not in prompt
    assert "clinical_trials_search is unavailable offline" in json.dumps(server.requests)
    # Structured answers are decoded under the role's full schema, bounded to the hypotheses
    # there are, with a budget that fits it; calls offering tools are not (a tool call is not JSON).
    supervisor = next(r for r in server.requests if r["messages"][-1].get("name") == "Supervisor")
    response_format = supervisor["response_format"]
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["strict"]
    schema = response_format["json_schema"]["schema"]
    assert schema["required"] == ["selected_index", "justification"]
    assert schema["properties"]["selected_index"]["maximum"] == 2  # three juniors
    assert supervisor["max_completion_tokens"] == decoding_budget(SupervisorChoice)
    assert "tools" not in supervisor and supervisor["model"] == "chimera-junior"
    assert "tools" in geneticist and "response_format" not in geneticist
    assert (
        geneticist["max_completion_tokens"]
        == load_config("local").models["junior"].sampling.max_tokens
    )


def test_run_task_uses_the_registered_bandit_policy(
    tmp_path: Path,
    server: FakeOpenAI,
    pubmedqa_file: Path,
    with_tool_plugins: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chimera_core.artifacts import LocalArtifactStore
    from chimera_core.data.training_data import BanditSample
    from chimera_core.model_registry import BASE, ModelRegistry
    from chimera_core.serving.model_sets import POLICY_ALIAS
    from chimera_core.training.bandit import LinearBanditPolicy

    policy = LinearBanditPolicy(n_features=256)
    hypotheses = ["statins lower LDL", "statins raise LDL", "no effect"]
    policy.update(
        [
            BanditSample(
                task_id="t", goal="g", hypotheses=hypotheses, chosen=0, propensity=1.0, reward=1.0
            )
        ]
    )
    policy.save(tmp_path / "policy")
    registry = ModelRegistry(LocalArtifactStore(tmp_path / "artifacts"), tmp_path / "cache")
    registry.register(POLICY_ALIAS, tmp_path / "policy", parent=BASE, stage="bandit", run_id="r1")
    registry.promote(POLICY_ALIAS, "bandit-r1", reason="test")

    out = tmp_path / "state.json"
    profile = _profile(tmp_path, server.url, pubmedqa_file)
    args = ["run-task", "--task-id", "21645374", "--profile", str(profile), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "bandit policy bandit-r1" in printed and "junior" in printed
    record = json.loads(out.read_text())
    assert record["model_set"]["supervisor_policy"] == "bandit-r1"
    assert record["state"]["supervisor_policy"] == "bandit:bandit-r1"
    # The supervisor LLM was not asked: the policy chose.
    assert not any(r["messages"][-1].get("name") == "Supervisor" for r in server.requests)


def test_run_task_with_question_and_context(
    tmp_path: Path,
    server: FakeOpenAI,
    pubmedqa_file: Path,
    with_tool_plugins: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "adhoc.json"
    profile = _profile(tmp_path, server.url, pubmedqa_file)
    args = ["run-task", "--question", "Does X help?", "--context", "X helped.", "--no-json-mode"]
    assert main([*args, "--profile", str(profile), "--out", str(out)]) == 0
    state = json.loads(out.read_text())["state"]
    assert state["task_id"].startswith("adhoc-") and state["research_goal"] == "Does X help?"
    assert all("response_format" not in r for r in server.requests)


def test_run_task_argument_and_task_errors(
    tmp_path: Path, server: FakeOpenAI, pubmedqa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = str(_profile(tmp_path, server.url, pubmedqa_file))
    assert main(["run-task", "--profile", profile]) == 2
    assert main(["run-task", "--question", "q", "--profile", profile]) == 2
    assert main(["run-task", "--task-id", "1", "--question", "q", "--profile", profile]) == 2
    assert main(["run-task", "--task-id", "000", "--profile", profile]) == 2
    err = capsys.readouterr().err
    assert "--question together with --context" in err and "task '000' not found" in err
    assert server.requests == []


def test_graph_writes_mermaid_and_png(tmp_path: Path) -> None:
    mmd, png = tmp_path / "lab.mmd", tmp_path / "lab.png"
    assert main(["graph", "--out", str(mmd)]) == 0
    assert main(["graph", "--out", str(png)]) == 0
    text = mmd.read_text()
    assert "__start__ --> Geneticist;" in text and "PrincipalInvestigator --> __end__;" in text
    assert "SafetyOfficer -. &nbsp;critical&nbsp; .-> HypothesisRefiner;" in text
    assert "tools -.-> Pharmacologist;" in text
    assert "defer = True" in text  # the supervisor waits for every junior
    assert "HypothesisRefiner -.-> Supervisor" not in text  # no simulated phantom edges
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert main(["graph", "--out", str(tmp_path / "lab.svgz")]) == 2
