"""The plugin system: built-ins, the example third-party package, allow-list, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chimera_core.config import load_config
from chimera_core.errors import PluginError
from chimera_core.plugins import ResearchTask, RewardInput, ToolContext, build_registry
from chimera_core.plugins.manager import PluginInfo, PluginRegistry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "chimera-example-plugin"


def _fake_dist(site: Path, dist: str, ep_name: str, module: str, source: str) -> None:
    """A minimal installed distribution (dist-info + module) that importlib.metadata finds."""
    info = site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[chimera]\n{ep_name} = {module}\n")
    (site / f"{module}.py").write_text(source)


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin really installed (pip, no deps) into a private site directory.

    It is built from a copy, so no build/ or *.egg-info/ lands in examples/.
    """
    site = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return site


def _chimera(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(site), **env}
    if env.get("CHIMERA_PLUGINS") is None:
        full_env.pop("CHIMERA_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "chimera_core.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
    )


def test_builtins_register_through_the_same_hooks() -> None:
    registry = build_registry(environ={"CHIMERA_PLUGINS": ""})
    assert all(p.builtin for p in registry.plugins)
    for entry in registry.entries():
        assert entry.plugin.builtin


def test_example_plugin_is_listed_and_works(
    example_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = _chimera(example_site, "plugins", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["plugin"]: r for r in json.loads(proc.stdout)}
    assert rows["example"]["package"] == "chimera-example-plugin"
    assert set(rows["example"]["registers"]) == {"tool:dose_calculator", "reward:step_brevity"}
    assert rows["example"]["builtin"] is False

    sys.path.insert(0, str(example_site))
    try:
        registry = build_registry(environ={})
    finally:
        sys.path.remove(str(example_site))
    config = load_config("local", environ={})
    task = ResearchTask(id="t1", goal="Does X help?", context="c", expected_decision="yes")
    tool = registry.tool("dose_calculator")
    context = ToolContext(config, task=task, role="ProtocolDesigner")
    assert tool.run("70 kg at 2.5 mg/kg", context) == "total dose: 175 mg (70 kg at 2.5 mg/kg)"
    assert tool.run("Does X help?", context).startswith("dose_calculator: give a body weight")

    reward = registry.reward("step_brevity")
    state = {"final_protocol": {"steps": ["Recruit 60 adults", "word " * 31]}}
    score = reward.score(RewardInput(task=task, state=state, config=config))
    assert (score.value, score.breakdown) == (0.5, {"short_steps": 1.0, "steps": 2.0})
    designed = {"experimental_protocol": {"steps": ["Measure pain at 24 h"]}}  # GRPO's view
    assert reward.score(RewardInput(task=task, state=designed, config=config)).value == 1.0
    empty = reward.score(RewardInput(task=task, state={}, config=config))
    assert (empty.value, empty.reason) == (0.0, "no protocol steps")

    # Its lifecycle hooks append one JSON line per event to $EXAMPLE_PLUGIN_EVENTS.
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("EXAMPLE_PLUGIN_EVENTS", str(events))
    record = {"status": "succeeded", "reward": 0.5}
    registry.notify("on_rollout_finished", run_id="r1", task_id="t1", reward=0.5, record=record)
    registry.notify("on_stage_finished", run_id="r1", stage="gather", outputs={"a": "file:///a"})
    assert [json.loads(line) for line in events.read_text().splitlines()] == [
        {
            "event": "rollout_finished",
            "run_id": "r1",
            "task_id": "t1",
            "reward": 0.5,
            "status": "succeeded",
        },
        {
            "event": "stage_finished",
            "run_id": "r1",
            "stage": "gather",
            "outputs": {"a": "file:///a"},
        },
    ]


def test_the_example_plugins_own_tests_pass(example_site: Path, tmp_path: Path) -> None:
    """The tests docs/plugins.md shows, run as an author would, against the installed plugin."""
    env = {**os.environ, "PYTHONPATH": str(example_site), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CHIMERA_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout


def test_allow_list_limits_external_plugins(example_site: Path) -> None:
    for allow, expected in (
        ("", False),
        ("example", True),
        ("chimera-example-plugin", True),
    ):
        proc = _chimera(example_site, "plugins", "list", "--json", CHIMERA_PLUGINS=allow)
        assert proc.returncode == 0, proc.stderr
        names = {r["plugin"] for r in json.loads(proc.stdout)}
        assert ("example" in names) is expected, allow
    # A name matching no installed plugin is a typo to report, not a plugin to drop unseen.
    proc = _chimera(example_site, "plugins", "list", CHIMERA_PLUGINS="example,other")
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert "CHIMERA_PLUGINS names no installed plugin: other" in err
    assert "example (package chimera-example-plugin)" in err and "Traceback" not in err


def test_import_failure_names_plugin_and_package(tmp_path: Path) -> None:
    _fake_dist(tmp_path, "broken-pkg", "broken", "broken_mod", "raise ImportError('no numpy 9')\n")
    proc = _chimera(tmp_path, "plugins", "list")
    assert proc.returncode == 2
    assert "plugin 'broken' (package broken-pkg) failed to import" in proc.stderr
    assert "no numpy 9" in proc.stderr and "Traceback" not in proc.stderr


def test_duplicate_name_names_both_plugins(example_site: Path, tmp_path: Path) -> None:
    source = (
        "from chimera_core.plugins import hookimpl\n"
        "class T:\n    name = 'dose_calculator'\n    description = 'd'\n"
        "    def run(self, query, context):\n        return ''\n"
        "@hookimpl\ndef register_tools(register):\n    register(T())\n"
    )
    _fake_dist(tmp_path, "zz-dup", "zz_dup", "zz_dup_mod", source)
    proc = _chimera(example_site, "plugins", "list", PYTHONPATH=f"{example_site}:{tmp_path}")
    assert proc.returncode == 2
    assert "plugin 'zz_dup' (package zz-dup) registered tool 'dose_calculator'" in proc.stderr
    assert "already registered by plugin 'example' (package chimera-example-plugin)" in proc.stderr


def test_malformed_registration_and_unknown_names() -> None:
    registry = PluginRegistry(build_registry(environ={"CHIMERA_PLUGINS": ""}).pm, [])
    info = PluginInfo("p", "pkg", builtin=False)

    class NoRun:
        name = "x"
        description = "d"

    with pytest.raises(
        PluginError, match=r"plugin 'p' \(package pkg\) registered tool 'x' without: run"
    ):
        registry.add("tool", NoRun(), info)
    with pytest.raises(PluginError, match="without a string 'name'"):
        registry.add("reward", object(), info)
    with pytest.raises(PluginError, match=r"unknown tool 'nope' \(known: none\)"):
        registry.tool("nope")


def test_a_module_named_in_chimera_plugin_modules_loads_without_installing() -> None:
    registry = build_registry(
        environ={
            "CHIMERA_PLUGINS": "",
            "CHIMERA_PLUGIN_MODULES": "tests.closed_loop.planted_reward",
        }
    )
    assert registry.reward("planted_go").name == "planted_go"
    (info,) = [p for p in registry.plugins if p.name == "tests.closed_loop.planted_reward"]
    assert not info.builtin and info.package == "module tests.closed_loop.planted_reward"
    # The variable is the loader's, never a config override.
    load_config("local", environ={"CHIMERA_PLUGIN_MODULES": "tests.closed_loop.planted_reward"})


def test_a_plugin_module_that_cannot_import_names_the_module_and_the_variable() -> None:
    with pytest.raises(
        PluginError, match=r"plugin module 'no_such_mod' \(CHIMERA_PLUGIN_MODULES\)"
    ):
        build_registry(environ={"CHIMERA_PLUGIN_MODULES": "no_such_mod"})


def test_an_unknown_allow_list_name_is_a_plugin_error_listing_the_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chimera_core.cli.main import main
    from chimera_core.plugins.manager import get_registry

    with pytest.raises(PluginError, match="CHIMERA_PLUGINS names no installed plugin: typo"):
        build_registry(environ={"CHIMERA_PLUGINS": "typo"})
    # Built-ins and CHIMERA_PLUGIN_MODULES names are known names too.
    build_registry(environ={"CHIMERA_PLUGINS": "chimera_plugins.tools"})
    monkeypatch.setenv("CHIMERA_PLUGINS", "no-such-plugin")
    get_registry.cache_clear()
    try:
        assert main(["config", "validate"]) == 2
    finally:
        get_registry.cache_clear()
    err = " ".join(capsys.readouterr().err.split())
    assert "CHIMERA_PLUGINS names no installed plugin: no-such-plugin" in err
    assert "installed external plugins:" in err and "ok profile" not in err
