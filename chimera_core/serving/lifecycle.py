"""Start the embedded model server for a config in the background, wait for it, stop it.

``start_server(config)`` prepares every embedded alias's checkpoint, launches
``python -m chimera_core.serving.server`` and returns once ``/health`` answers. The process is
stopped by ``stop()``, the context manager, interpreter exit, or on its own when this process
dies. ``endpoints(config, server)`` tells callers where each alias lives, whatever its backend.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from chimera_core.config.models import ChimeraConfig
from chimera_core.errors import ChimeraError
from chimera_core.serving.model_store import Progress, resolve_checkpoint

LOG_TAIL_LINES = 40
# Idle OpenMP workers sleep instead of spinning. On 2 cores shared with the lab's agents a
# spinning pool fights the other processes: decode steps measured 3-10x slower under load.
# OpenMP reads this when torch loads, so it must be in the environment before that.
THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


@dataclass(frozen=True)
class Endpoint:
    """Where one model alias is served: an OpenAI-compatible base URL and model name."""

    alias: str
    base_url: str
    model: str
    api_key: str
    backend: str


def embedded_models(config: ChimeraConfig, progress: Progress | None = None) -> dict[str, Path]:
    """Served model name -> checkpoint directory for every embedded alias (preparing ``base``)."""
    models: dict[str, Path] = {}
    owners: dict[str, str] = {}
    resolved: dict[str, Path] = {}  # aliases usually share a checkpoint: verify it once
    for alias, endpoint in config.models.items():
        if endpoint.backend != "embedded" or endpoint.base_url:
            continue  # served elsewhere: vLLM, or an embedded server at a configured URL
        ref = endpoint.checkpoint
        if ref not in resolved:
            resolved[ref] = resolve_checkpoint(ref, config, progress=progress)
        path = resolved[ref]
        name = endpoint.served_model
        if name in models and models[name] != path:
            raise ChimeraError(
                f"models.{alias}.served_model: {name!r} is also models.{owners[name]}.served_model "
                f"with another checkpoint ({models[name]} vs {path})"
            )
        models[name], owners[name] = path, alias
    return models


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EmbeddedServer:
    """A running background server process."""

    def __init__(
        self, process: subprocess.Popen[bytes], host: str, log_path: Path, models: dict[str, Path]
    ) -> None:
        self.process = process
        self.host = host
        self.port: int | None = None
        self.log_path = log_path
        self.models = models
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        """``http://host:port`` (the root, without ``/v1``)."""
        if self.port is None:
            raise ChimeraError("the model server has not reported its port yet")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://host:port/v1``."""
        return f"{self.url}/v1"

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server's log."""
        return _tail(self.log_path, lines)

    def wait_ready(self, port_file: Path, timeout_s: float) -> None:
        """Block until ``/health`` answers; raise with the log tail if the process dies first."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise ChimeraError(
                        f"the model server exited with code {self.process.returncode} while "
                        f"starting; last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                if self.port is None and port_file.is_file():
                    self.port = int(port_file.read_text())
                if self.port is not None:
                    try:
                        if client.get(f"{self.url}/health").status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                time.sleep(0.2)
        self.stop()
        raise ChimeraError(
            f"the model server was not ready within {timeout_s:.0f} s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def load_model(self, name: str, path: Path, timeout_s: float = 300.0) -> dict[str, Any]:
        """Serve ``path`` as ``name`` without a restart (replacing the name's current model)."""
        response = httpx.post(
            f"{self.url}/admin/models", json={"name": name, "path": str(path)}, timeout=timeout_s
        )
        if response.status_code != 200:
            raise ChimeraError(
                f"loading {path} as {name!r} failed: {response.json()['error']['message']}"
            )
        self.models[name] = Path(path)
        result: dict[str, Any] = response.json()
        return result

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process: SIGTERM, then SIGKILL after ``timeout_s``. Idempotent."""
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def server_command(
    models: dict[str, Path], config: ChimeraConfig, host: str, port: int | None, port_file: Path
) -> list[str]:
    """The command line of the server process."""
    serving = config.serving
    command = [
        sys.executable,
        "-m",
        "chimera_core.serving.server",
        "--host",
        host,
        "--max-batch-size",
        str(serving.max_batch_size),
        "--max-new-tokens",
        str(serving.max_new_tokens),
        "--max-prompt-tokens",
        str(serving.max_prompt_tokens),
        "--max-request-bytes",
        str(serving.max_request_bytes),
        "--dtype",
        serving.dtype,
        "--port-file",
        str(port_file),
        "--parent-pid",
        str(os.getpid()),
    ]
    if port:
        command += ["--port", str(port)]
    for name, path in models.items():
        command += ["--model", f"{name}={path}"]
    return command


def start_server(
    config: ChimeraConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    models: dict[str, Path] | None = None,
    log_path: Path | None = None,
    timeout_s: float = 180.0,
    progress: Progress | None = None,
) -> EmbeddedServer:
    """Start a server for the config's embedded aliases (or ``models``) and wait until healthy."""
    models = dict(models) if models is not None else embedded_models(config, progress=progress)
    host = host or config.serving.host
    port = port if port is not None else config.serving.port
    runtime = config.serving.models_dir.expanduser().resolve().parent / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    log_path = log_path or runtime / f"server-{stamp}.log"
    port_file = runtime / f"server-{stamp}.port"
    if progress:
        progress(f"starting the model server ({', '.join(models) or 'no models'})")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(models, config, host, port, port_file),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**THREAD_ENV, **os.environ, "PYTHONUNBUFFERED": "1"},
            # Own session: a terminal Ctrl-C reaches us, and we stop the server in order.
            start_new_session=True,
        )
    server = EmbeddedServer(process, host, log_path, models)
    try:
        server.wait_ready(port_file, timeout_s)
    except BaseException:
        server.stop()
        raise
    finally:
        port_file.unlink(missing_ok=True)
    return server


def endpoints(config: ChimeraConfig, server: EmbeddedServer | None = None) -> dict[str, Endpoint]:
    """Alias -> endpoint: a configured base_url, else ``server``, else ``serving.port``."""
    result = {}
    for alias, model in config.models.items():
        if model.base_url:
            base_url = model.base_url  # vLLM, or an embedded server started elsewhere
        elif server is not None:
            base_url = server.base_url
        elif config.serving.port:
            base_url = f"http://{config.serving.host}:{config.serving.port}/v1"
        else:
            raise ChimeraError(
                f"models.{alias} uses the embedded backend and serving.port is not set: start "
                "the server first (chimera_core.serving.lifecycle.start_server) and pass it"
            )
        result[alias] = Endpoint(
            alias=alias,
            base_url=base_url,
            model=model.served_model,
            api_key=model.api_key.get_secret_value(),
            backend=model.backend,
        )
    return result


def base_urls(config: ChimeraConfig, server: EmbeddedServer | None = None) -> dict[str, str]:
    """Alias -> OpenAI base URL (``http://127.0.0.1:PORT/v1`` for embedded aliases)."""
    return {alias: e.base_url for alias, e in endpoints(config, server).items()}


@contextmanager
def embedded_server(config: ChimeraConfig, **kwargs: Any) -> Iterator[dict[str, str]]:
    """Run the server for the config's embedded aliases; yield alias -> base URL; then stop it."""
    with start_server(config, **kwargs) as server:
        yield base_urls(config, server)
