"""The vLLM server's lifecycle around a fake model process: key, adapters, restart, stop.

``fake_vllm_python`` takes vLLM's own command line, so everything Chimera does (command, env,
health wait, runtime adapter loading, watchdog restart, process-group stop) runs for real.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from chimera_core.artifacts.local import LocalArtifactStore
from chimera_core.config.models import ChimeraConfig, ModelEndpointConfig, ServingConfig
from chimera_core.errors import ChimeraError
from chimera_core.model_registry import ModelRegistry
from chimera_core.serving import model_sets as serving_module
from chimera_core.serving.model_sets import ModelServing, adapter_name
from chimera_core.serving.vllm_server import (
    ModelServerError,
    ServerSpec,
    VLLMServer,
    parse_prefix_cache,
    server_command,
    vllm_python,
)


def _settings(fake: str, **kw: object) -> ServingConfig:
    return ServingConfig(vllm_python=fake, startup_timeout_s=30, **kw)  # type: ignore[arg-type]


def _adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    import numpy as np
    from safetensors.numpy import save_file

    # Real (tiny, finite) safetensors: the registry refuses unreadable or NaN weights.
    save_file({"lora_A": np.ones((4, 8), np.float32)}, str(path / "adapter_model.safetensors"))
    return path


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except httpx.TransportError:  # restarting: not listening yet
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture()
def server(fake_vllm_python: str, tmp_path: Path) -> VLLMServer:
    spec = ServerSpec(tmp_path / "base", "base-model")
    running = VLLMServer(spec, _settings(fake_vllm_python), log_dir=tmp_path / "logs").start()
    yield running  # type: ignore[misc]
    running.stop()


def test_every_route_but_health_needs_the_generated_key(server: VLLMServer) -> None:
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.base_url}/models").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{server.base_url}/models", headers=wrong).status_code == 401
    load = {"lora_name": "x", "lora_path": "/tmp"}
    refused = httpx.post(f"{server.base_url}/load_lora_adapter", json=load)
    assert refused.status_code == 401
    assert server.models() == ["base-model"]
    assert len(server.api_key) >= 32


def test_the_key_is_in_the_environment_never_on_the_command_line(server: VLLMServer) -> None:
    assert server.process is not None
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().decode()
    assert server.api_key not in cmdline
    assert server.api_key not in server.log_path.read_text()
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().decode()
    assert f"VLLM_API_KEY={server.api_key}" in environ


def test_adapters_load_at_runtime_by_name(server: VLLMServer, tmp_path: Path) -> None:
    server.load_adapter("junior-sft-r1", _adapter(tmp_path / "a1"))
    assert server.models() == ["base-model", "junior-sft-r1"]
    with pytest.raises(ChimeraError, match="refused adapter 'bad'") as caught:
        server.load_adapter("bad", tmp_path / "missing")
    assert caught.value.exit_code == 2  # the adapter is the user's to fix


def test_a_killed_server_is_restarted_once_with_its_adapters(
    fake_vllm_python: str, tmp_path: Path
) -> None:
    spec = ServerSpec(tmp_path / "base", "base-model")
    with VLLMServer(spec, _settings(fake_vllm_python), log_dir=tmp_path).start() as server:
        server.load_adapter("senior-ppo-r1", _adapter(tmp_path / "a"))
        port, key, first = server.port, server.api_key, server.process
        assert first is not None
        os.killpg(first.pid, signal.SIGKILL)
        _wait(lambda: server.restarts == 1)
        server.settle()  # waits for the restarted server's health; nothing to report
        assert server.alive and (server.port, server.api_key) == (port, key)
        assert "senior-ppo-r1" in server.models()

        os.killpg(server.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        _wait(lambda: server.failure is not None)
        with pytest.raises(ModelServerError, match="died") as caught:
            server.check()
        assert caught.value.exit_code == 1  # a fault, not the user's input


def test_stop_ends_the_whole_process_group(fake_vllm_python: str, tmp_path: Path) -> None:
    spec = ServerSpec(tmp_path / "base", "base-model")
    server = VLLMServer(spec, _settings(fake_vllm_python), log_dir=tmp_path).start()
    assert server.process is not None
    pid = server.process.pid
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_a_server_that_cannot_start_names_its_log(tmp_path: Path) -> None:
    false = tmp_path / "python"
    false.write_text("#!/bin/sh\necho 'no such model' >&2\nexit 3\n")
    false.chmod(0o755)
    server = VLLMServer(ServerSpec(tmp_path, "m"), _settings(str(false)), log_dir=tmp_path)
    with pytest.raises(ModelServerError, match=r"exited with code 3.*\n.*no such model"):
        server.start()


def test_command_has_the_serving_flags_and_no_secret(tmp_path: Path) -> None:
    settings = ServingConfig(vllm_python="sh", api_key="s3cret", max_num_seqs=4)  # type: ignore[arg-type]
    spec = ServerSpec(tmp_path, "base", {"junior-sft-r": tmp_path / "a"})
    command = server_command(spec, settings, 8123)
    for flag in (
        "--enable-prefix-caching",
        "--enable-lora",
        "--enable-auto-tool-choice",
        "--chat-template",
        "--middleware",
    ):
        assert flag in command
    assert command[command.index("--tool-call-parser") + 1] == "hermes"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert f"junior-sft-r={tmp_path / 'a'}" in command
    assert "s3cret" not in " ".join(command)


def test_vllm_python_without_vllm_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    monkeypatch.setattr("chimera_core.serving.vllm_server.HERE", tmp_path / "a" / "b")
    with pytest.raises(ChimeraError, match="make setup"):
        vllm_python(ServingConfig())


def test_prefix_cache_counters_are_read_from_prometheus_text() -> None:
    text = (
        "# HELP vllm:prefix_cache_queries Prefix cache queries\n"
        'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 300.0\n'
        'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 120.0\n'
        'vllm:prefix_cache_hits_created{engine="0",model_name="m"} 1.7e+09\n'
    )
    assert parse_prefix_cache(text) == (300.0, 120.0)


def test_model_sets_share_one_server_base_and_adapters_by_name(
    fake_vllm_python: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ChimeraConfig(
        models={
            "junior": ModelEndpointConfig(served_model="chimera-junior"),
            "judge": ModelEndpointConfig(served_model="chimera-judge"),
            "remote": ModelEndpointConfig(
                backend="openai", base_url="http://127.0.0.1:9/v1", served_model="gpt"
            ),
        },
        roles={},
        serving=_settings(fake_vllm_python, models_dir=tmp_path / "models"),
    )
    monkeypatch.setattr(serving_module, "base_model", lambda cfg: (tmp_path, "base-model"))
    registry = ModelRegistry(LocalArtifactStore(tmp_path / "store"), tmp_path / "cache")
    v1 = registry.register(
        "junior", _adapter(tmp_path / "a1"), parent="base", stage="sft", run_id="r1"
    )
    v2 = registry.register(
        "junior", _adapter(tmp_path / "a2"), parent=v1.version, stage="sft", run_id="r2"
    )
    serving = ModelServing(config, registry)
    try:
        base = serving.endpoints({"junior": "base", "judge": "base"})
        assert base["junior"].model == base["judge"].model == "base-model"
        assert base["remote"].base_url == "http://127.0.0.1:9/v1"
        server = serving.server
        assert server is not None
        first = serving.endpoints({"junior": v1.version})
        assert first["junior"].model == adapter_name("junior", v1.version)
        serving.offer("junior", v2.version)  # what a training stage does after registering
        assert server.models() == [
            "base-model",
            adapter_name("junior", v1.version),
            adapter_name("junior", v2.version),
        ]
        assert serving.server is server  # one server for every set
        with pytest.raises(ChimeraError, match="cannot load version"):
            serving.endpoints({"remote": v1.version})
    finally:
        serving.close()
