"""The import contracts of `make lint` (.importlinter) hold, and cover every core package."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_every_core_package_has_a_layer_and_is_closed_to_the_plugins() -> None:
    contracts = configparser.ConfigParser()
    contracts.read(ROOT / ".importlinter")
    layers = {
        name.strip()
        for line in contracts["importlinter:contract:layers"]["layers"].split("\n")
        for name in line.split("|")
        if name.strip()
    }
    forbidden = set(contracts["importlinter:contract:plugin-api"]["forbidden_modules"].split())
    core = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "chimera_core").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert core - layers == set(), "a chimera_core package without a layer in .importlinter"
    open_to_plugins = {m for m in core if f"chimera_core.{m}" not in forbidden}
    assert open_to_plugins == {"plugins"}  # the public plugin API, nothing else
