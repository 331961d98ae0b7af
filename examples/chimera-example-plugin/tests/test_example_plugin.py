"""Tests of the example plugin, run with pytest where it is installed next to Chimera."""

import json

from chimera_core.plugins import (
    ResearchTask,
    RewardInput,
    ToolContext,
    build_registry,
    load_checked_config,
)

# Only this plugin next to the built-ins, whatever else is installed.
REGISTRY = build_registry(environ={"CHIMERA_PLUGINS": "example"})
CONFIG = load_checked_config("local")
TASK = ResearchTask(
    id="t1",
    goal="Does ketamine at 0.5 mg/kg reduce pain after knee surgery?",
    context="Sixty adults (mean weight 70 kg) were given ketamine 0.5 mg/kg or saline.",
    expected_decision="yes",
)


def test_the_plugin_registers_its_tool_and_reward():
    names = {(e.kind, e.name) for e in REGISTRY.entries() if e.plugin.name == "example"}
    assert names == {("tool", "dose_calculator"), ("reward", "step_brevity")}


def test_dose_calculator():
    tool = REGISTRY.tool("dose_calculator")
    context = ToolContext(config=CONFIG, task=TASK, role="ProtocolDesigner")
    assert tool.run("70 kg at 0.5 mg/kg", context) == "total dose: 35 mg (70 kg at 0.5 mg/kg)"
    # No numbers is an answer too, never an exception.
    assert tool.run(TASK.goal, context).startswith("dose_calculator: give a body weight")


def test_step_brevity():
    reward = REGISTRY.reward("step_brevity")
    state = {
        "final_protocol": {
            "title": "Ketamine for pain after knee surgery",
            "steps": ["Recruit 60 adults", "Give ketamine 0.5 mg/kg " + "and wait " * 20],
            "safety_concerns": ["hallucinations"],
            "budget_usd": 50000,
        }
    }
    score = reward.score(RewardInput(task=TASK, state=state, config=CONFIG))
    assert score.value == 0.5
    assert score.breakdown == {"short_steps": 1.0, "steps": 2.0}
    empty = reward.score(RewardInput(task=TASK, state={}, config=CONFIG))
    assert (empty.value, empty.reason) == (0.0, "no protocol steps")


def test_lifecycle_hooks_append_events(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("EXAMPLE_PLUGIN_EVENTS", str(events))
    REGISTRY.notify(
        "on_rollout_finished",
        run_id="r1",
        task_id="t1",
        reward=0.5,
        record={"status": "succeeded"},
    )
    REGISTRY.notify("on_stage_finished", run_id="r1", stage="gather", outputs={})
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["rollout_finished", "stage_finished"]
    assert lines[0]["reward"] == 0.5 and lines[1]["stage"] == "gather"
