"""Load a profile: YAML file, then ``CHIMERA_...`` environment overrides, then validation.

Precedence, lowest first: the models' defaults, the profile YAML, ``CHIMERA_*`` variables (read
by pydantic-settings), ``CHIMERA_PUBMEDQA_FILE``, then explicit overrides (CLI flags, tests).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ConfigError

ENV_PREFIX = "CHIMERA_"
# Variables with a meaning of their own; never read as key-path overrides.
RESERVED_ENV = {
    "CHIMERA_PROFILE",
    "CHIMERA_CONFIG_DIR",
    "CHIMERA_PLUGINS",
    "CHIMERA_PLUGIN_MODULES",
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


def resolve_profile_path(profile: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """A profile is a path to a YAML file or the name of one in the config dirs.

    None is ``$CHIMERA_PROFILE`` or ``local``: every command resolves a profile the same way.
    """
    environ = os.environ if environ is None else environ
    profile = profile or environ.get("CHIMERA_PROFILE") or DEFAULT_PROFILE
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


class _EnvBase(BaseSettings):
    """How ``CHIMERA_*`` variables map onto the config; the fields are ChimeraConfig's."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_ignore_empty=True,  # Airflow renders an unset DAG param as ''
        env_parse_none_str="null",
        case_sensitive=False,
        extra="ignore",
    )


# ChimeraConfig's fields, every one optional: the source only reads the variables (the field
# types tell it which values are lists or sections); validation is ChimeraConfig's.
_ENV_FIELDS: dict[str, Any] = {
    name: (field.annotation, None) for name, field in ChimeraConfig.model_fields.items()
}
_EnvSettings = create_model("ChimeraEnvSettings", __base__=_EnvBase, **_ENV_FIELDS)


class _UnreadableValue(ValueError):
    """A structured value (list, mapping) that is neither JSON nor YAML."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(reason)
        self.value = value


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(_EnvSettings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        """Lists and mappings as JSON or YAML flow syntax (``[a, b]``), as profiles write them."""
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise _UnreadableValue(
                value, f"not valid JSON or YAML: {reason} (got {value[:80]!r})"
            ) from None


def _override_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``CHIMERA_*`` variables that override config keys; blank values count as unset."""
    return {
        var: raw if raw.strip() else ""
        for var, raw in environ.items()
        if var.startswith(ENV_PREFIX)
        and var not in RESERVED_ENV
        and not var.startswith(RESERVED_PREFIXES)
    }


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``CHIMERA_STAGES__SFT__MAX_STEPS=5`` -> ``{"stages": {"sft": {"max_steps": "5"}}}``.

    Read by pydantic-settings (``__`` nests, names are case-insensitive, empty values are
    ignored, ``null`` is None); scalars stay strings for validation to convert. A variable
    naming no config section is kept too, so validation reports it as an unknown key.
    """
    variables = _override_vars(environ)
    try:
        data = _EnvSource(variables)()
    except SettingsError as exc:
        cause = exc.__cause__
        if isinstance(cause, _UnreadableValue):
            names = sorted(v for v, raw in variables.items() if raw == cause.value)
            raise ConfigError(
                [f"{name}: {cause}" for name in names] or [str(cause)], source="environment"
            ) from None
        raise ConfigError([f"{exc} ({cause})"], source="environment") from None
    for var, raw in sorted(variables.items()):
        path = [part.lower() for part in var[len(ENV_PREFIX) :].split("__")]
        if raw and path[0] not in ChimeraConfig.model_fields:
            _set_path(data, path, raw)
    return data


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


def _leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from _leaf_paths(value, (*prefix, key))
        else:
            yield [*prefix, key]


def _seed_mapping_default(data: dict[str, Any], path: list[str]) -> None:
    """Before an override sets a key inside a mapping field the profile leaves out (such as
    ``rewards.weights.x``), copy the field's default in, so the key is added to it, not all."""
    node: dict[str, Any] = data
    model: type[BaseModel] = ChimeraConfig
    default: BaseModel | None = None
    for key in path[:-1]:
        name = next((n for n in model.model_fields if n.lower() == key.lower()), None)
        if name is None:
            return  # unknown key: validation names it
        field = model.model_fields[name]
        present = _existing_key(node, name)
        if default is not None:  # the section is absent: its value is the parent's default
            value = getattr(default, name)
        elif field.is_required():
            value = None
        else:
            value = field.get_default(call_default_factory=True)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if present in node:
                if not isinstance(node[present], dict):
                    return
                node, default = node[present], None
            else:
                # The override creates this section anyway; its defaults are ``value``'s.
                node = node.setdefault(name, {})
                default = value if isinstance(value, BaseModel) else None
            model = annotation
            continue
        if annotation and get_origin(annotation) is dict and present not in node and value:
            node[name] = TypeAdapter(annotation).dump_python(value)
        return


def _merge(data: dict[str, Any], updates: Mapping[str, Any]) -> None:
    """Deep-merge ``updates`` into ``data``, matching keys case-insensitively."""
    for key, value in updates.items():
        key = _existing_key(data, key)
        if isinstance(value, Mapping) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = value


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


def _env_origins(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Key path (lower case) -> the environment variable that set it."""
    origins = {
        tuple(part.lower() for part in var[len(ENV_PREFIX) :].split("__")): var
        for var, raw in _override_vars(environ).items()
        if raw
    }
    if environ.get("CHIMERA_PUBMEDQA_FILE"):
        origins[("data", "file")] = origins[("data", "source")] = "CHIMERA_PUBMEDQA_FILE"
    return origins


def _blamed(
    problems: list[str],
    origins: dict[tuple[str, ...], str],
    overridden: list[tuple[str, ...]],
    path: Path,
) -> ConfigError:
    """The error for problems, each naming the environment variables behind its key.

    A variable set ``a.b`` (or a section above it) is blamed for a problem at ``a.b``, unless
    an explicit override set the key last; one setting a key under ``a`` is only mentioned.
    """
    lines, blamed, mentioned = [], 0, 0
    for problem in problems:
        loc = tuple(problem.split(": ", 1)[0].lower().split("."))
        if any(loc[: len(o)] == o for o in overridden):
            lines.append(problem)
            continue
        by = sorted(var for key, var in origins.items() if loc[: len(key)] == key)
        under = sorted(
            var for key, var in origins.items() if len(key) > len(loc) and key[: len(loc)] == loc
        )
        if by:
            blamed += 1
            problem += f" (set by {', '.join(by)})"
        elif under:
            mentioned += 1
            problem += f" (the environment sets {', '.join(under)} in it)"
        lines.append(problem)
    if blamed == len(problems):
        return ConfigError(lines, source="environment")
    both = blamed or mentioned
    return ConfigError(lines, source=f"{path} and the environment" if both else str(path))


def load_config(
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ChimeraConfig:
    """Resolve a profile into a validated config; raise ``ConfigError`` listing every problem."""
    environ = os.environ if environ is None else environ
    path = resolve_profile_path(profile, environ)
    data = _read_yaml(path)
    data.setdefault("profile", path.stem)
    from_env = env_overrides(environ)
    for keys in _leaf_paths(from_env):
        _seed_mapping_default(data, keys)
    _merge(data, from_env)
    if pubmedqa_file := environ.get("CHIMERA_PUBMEDQA_FILE"):
        _set_path(data, ["data", "file"], pubmedqa_file)
        _set_path(data, ["data", "source"], "file")
    for dotted, value in (overrides or {}).items():
        _seed_mapping_default(data, dotted.split("."))
        _set_path(data, dotted.split("."), value)
    origins = _env_origins(environ)
    overridden = [tuple(d.lower().split(".")) for d in overrides or {}]
    try:
        config = ChimeraConfig.model_validate(data)
    except ValidationError as exc:
        raise _blamed(_format_errors(exc), origins, overridden, path) from None
    if problems := config.reference_problems():
        raise _blamed(problems, origins, overridden, path)
    return config


def redacted_dump(config: ChimeraConfig) -> dict[str, Any]:
    """The config as plain data with every secret masked."""
    return config.model_dump(mode="json")
