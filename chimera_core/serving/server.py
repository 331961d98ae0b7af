"""The server process: load models, bind, serve; ``python -m`` entry point used by lifecycle.

Run: ``python -m chimera_core.serving.server --model NAME=HF_DIR [--model ...] [--port N]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from chimera_core.config.models import EmbeddedServerConfig
from chimera_core.errors import ChimeraError
from chimera_core.serving.app import create_app
from chimera_core.serving.pool import ModelPool

log = logging.getLogger("chimera.serving")


def _watch_parent(parent_pid: int) -> None:
    """Exit (gracefully, via SIGTERM) when the process that started us is gone."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                log.warning("parent process %d is gone; shutting down", parent_pid)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket; port None or 0 lets the OS choose a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port or 0))
    except OSError as exc:
        sock.close()
        raise ChimeraError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    models: dict[str, Path],
    settings: EmbeddedServerConfig,
    *,
    threads: int | None = None,
    port_file: Path | None = None,
    parent_pid: int | None = None,
    on_ready: Callable[[str, int], None] | None = None,
    log_level: str = "info",
) -> None:
    """Load the models, bind, and serve until SIGINT/SIGTERM (blocking)."""
    import torch
    import uvicorn
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    if parent_pid:
        _watch_parent(parent_pid)
    pool = ModelPool(settings)
    try:
        for name, path in models.items():
            pool.load(name, path)
        sock = bind(settings.host, settings.port)
        host, port = sock.getsockname()[:2]
        if port_file is not None:
            tmp = port_file.with_name(port_file.name + ".tmp")
            tmp.write_text(str(port))
            tmp.replace(port_file)
        log.info("serving %s on http://%s:%d/v1", ", ".join(models) or "no models", host, port)
        if host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "listening beyond this machine: /admin/models (loads any local path) has no auth"
            )
        if on_ready is not None:
            on_ready(host, port)
        config = uvicorn.Config(
            create_app(pool, settings),
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
            log_config=None,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        pool.close()


def parse_model_arg(value: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path)."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, Path(path)


def setup_server_logging(level: str) -> None:
    """Rich logs on a terminal, plain timestamped lines in a log file."""
    from chimera_core.logs import setup_logging

    if sys.stderr.isatty():
        setup_logging(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("chimera")
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (used by the lifecycle API's background process)."""
    defaults = EmbeddedServerConfig()
    parser = argparse.ArgumentParser(description="Chimera's OpenAI-compatible model server.")
    parser.add_argument(
        "--model", action="append", type=parse_model_arg, default=[], metavar="NAME=PATH"
    )
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--max-prompt-tokens", type=int, default=defaults.max_prompt_tokens)
    parser.add_argument("--max-request-bytes", type=int, default=defaults.max_request_bytes)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=defaults.dtype)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    parser.add_argument("--port-file", type=Path, default=None, help="write the bound port here")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process dies")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    setup_server_logging(args.log_level.upper())
    try:
        settings = EmbeddedServerConfig(
            host=args.host,
            port=args.port or None,
            max_batch_size=args.max_batch_size,
            max_new_tokens=args.max_new_tokens,
            max_prompt_tokens=args.max_prompt_tokens,
            max_request_bytes=args.max_request_bytes,
            dtype=args.dtype,
        )
        serve(
            dict(args.model),
            settings,
            threads=args.threads,
            port_file=args.port_file,
            parent_pid=args.parent_pid,
            log_level=args.log_level,
        )
    except (ChimeraError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
