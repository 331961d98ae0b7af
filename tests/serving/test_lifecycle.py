"""Starting and stopping the server process, and where each alias's endpoint is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from chimera_core.config.models import ChimeraConfig, EmbeddedServerConfig, ModelEndpointConfig
from chimera_core.errors import ChimeraError
from chimera_core.serving.lifecycle import EmbeddedServer, base_urls, endpoints, start_server


def _config(models_dir: Path, port: int | None = None) -> ChimeraConfig:
    return ChimeraConfig(
        models={
            "junior": ModelEndpointConfig(served_model="chimera-junior"),
            "vllm": ModelEndpointConfig(
                backend="openai", base_url="http://gpu-node:8000/v1", served_model="qwen"
            ),
        },
        roles={},
        serving=EmbeddedServerConfig(models_dir=models_dir, port=port),
    )


class _Running:
    base_url = "http://127.0.0.1:1234/v1"


def test_endpoints_for_each_backend(tmp_path: Path) -> None:
    running: Any = _Running()
    urls = base_urls(_config(tmp_path), running)
    assert urls == {"junior": "http://127.0.0.1:1234/v1", "vllm": "http://gpu-node:8000/v1"}
    found = endpoints(_config(tmp_path), running)
    assert found["junior"].model == "chimera-junior" and found["vllm"].backend == "openai"
    # A server started elsewhere on a configured port.
    assert base_urls(_config(tmp_path, port=8123))["junior"] == "http://127.0.0.1:8123/v1"
    with pytest.raises(ChimeraError, match="models.junior uses the embedded backend"):
        base_urls(_config(tmp_path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; its parent (gone or not) just has not reaped it yet.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


PARENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from chimera_core.config.models import ChimeraConfig, EmbeddedServerConfig
    from chimera_core.serving.lifecycle import start_server
    serving = EmbeddedServerConfig(models_dir=Path(sys.argv[1]))
    config = ChimeraConfig(models={}, roles={}, serving=serving)
    server = start_server(config, models={})
    print(server.process.pid, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_server_goes_away_with_its_parent(tmp_path: Path, how: signal.Signals) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "models")], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    assert _alive(server_pid)
    parent.send_signal(how)  # SIGKILL: no cleanup code runs; SIGINT: Ctrl-C
    parent.wait(30)
    assert _wait_gone(server_pid), f"server {server_pid} outlived its parent ({how.name})"


@pytest.mark.slow
def test_a_taken_port_is_a_clear_error(tmp_path: Path, server: EmbeddedServer) -> None:
    with pytest.raises(
        ChimeraError, match=r"(?s)exited with code 2.*cannot listen on 127.0.0.1.*in use"
    ):
        start_server(_config(tmp_path, port=server.port), models={}, timeout_s=60)
