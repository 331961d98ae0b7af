"""Load a profile: YAML file, then ``CHIMERA_...`` environment overrides, then validation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ConfigError

ENV_PREFIX = "CHIMERA_"
# Variables with a meaning of their own; never read as key-path overrides.
RESERVED_ENV = {
    "CHIMERA_PROFILE",
    "CHIMERA_CONFIG_DIR",
    "CHIMERA_PLUGINS",
    "CHIMERA_PUBMEDQA_FILE",
    "CHIMERA_HOME",
    "CHIMERA_DEBUG",
    "CHIMERA_SHARED_DIR",  # tests and benchmarks: where ../shared is
    "CHIMERA_CLI",
}
RESERVED_PREFIXES = ("CHIMERA_BENCH_",)  # benchmark switches (benchmarks/README.md)
DEFAULT_PROFILE = "local"


def config_dirs() -> list[Path]:
    """Directories searched for ``<profile>.yaml``, first match wins."""
    dirs = []
    if env := os.environ.get("CHIMERA_CONFIG_DIR"):
        dirs.append(Path(env))
    dirs.append(Path.cwd() / "configs")
    dirs.append(Path(__file__).resolve().parents[2] / "configs")
    return dirs


def resolve_profile_path(profile: str) -> Path:
    """A profile is a path to a YAML file or the name of one in the config dirs."""
    as_path = Path(profile)
    if as_path.suffix in {".yaml", ".yml"}:
        if not as_path.is_file():
            raise ConfigError([f"profile file not found: {as_path}"], source=str(as_path))
        return as_path
    for d in config_dirs():
        candidate = d / f"{profile}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in config_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError(
        [f"unknown profile {profile!r} (expected one of: {', '.join(known) or 'none found'})"],
        source="profile",
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(["top level must be a mapping"], source=str(path))
    return data


def env_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any, str]]:
    """``CHIMERA_STAGES__SFT__MAX_STEPS=5`` -> (["stages","sft","max_steps"], 5, var).

    An empty value leaves the profile's setting: Airflow renders an unset DAG param as ''.
    """
    out = []
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var in RESERVED_ENV or not raw.strip():
            continue
        if var.startswith(RESERVED_PREFIXES):
            continue
        path = [part.lower() for part in var[len(ENV_PREFIX) :].split("__")]
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out.append((path, value, var))
    return out


def _existing_key(node: dict[str, Any], key: str) -> str:
    """Environment names are upper case; match keys such as role names case-insensitively."""
    return next((k for k in node if k.lower() == key.lower()), key)


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for key in path[:-1]:
        key = _existing_key(node, key)
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[_existing_key(node, path[-1])] = value


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] not in {"missing"}:
            shown = repr(err["input"])
            msg = f"{msg} (got {shown[:80]})"
        problems.append(f"{loc}: {msg}")
    return problems


def load_config(
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ChimeraConfig:
    """Resolve a profile into a validated config; raise ``ConfigError`` listing every problem."""
    environ = os.environ if environ is None else environ
    profile = profile or environ.get("CHIMERA_PROFILE") or DEFAULT_PROFILE
    path = resolve_profile_path(profile)
    data = _read_yaml(path)
    data.setdefault("profile", path.stem)
    for key_path, value, _var in env_overrides(environ):
        _set_path(data, key_path, value)
    if pubmedqa_file := environ.get("CHIMERA_PUBMEDQA_FILE"):
        _set_path(data, ["data", "file"], pubmedqa_file)
        _set_path(data, ["data", "source"], "file")
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted.split("."), value)
    try:
        config = ChimeraConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), source=str(path)) from None
    if problems := config.reference_problems():
        raise ConfigError(problems, source=str(path))
    return config


def redacted_dump(config: ChimeraConfig) -> dict[str, Any]:
    """The config as plain data with every secret masked."""
    return config.model_dump(mode="json")
