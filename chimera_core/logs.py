"""Logging that names the run id, stage and role on every line."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

_CONFIGURED = False


def debug_enabled() -> bool:
    """Whether CHIMERA_DEBUG asks for tracebacks and the third-party logs left as they are."""
    return os.environ.get("CHIMERA_DEBUG", "") not in ("", "0", "false")


def setup_logging(level: str = "INFO") -> None:
    """Send chimera's logs to stderr through rich (idempotent)."""
    global _CONFIGURED
    if _CONFIGURED:
        return
    console = Console(stderr=True)
    if not console.is_terminal:  # a task or pod log: no wrapping at 80 columns
        console = Console(stderr=True, width=200)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("chimera")
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    _CONFIGURED = True


class ContextLogger(logging.LoggerAdapter):
    """Prefixes messages with ``[run=... stage=... role=...]``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        ctx = " ".join(f"{k}={v}" for k, v in (self.extra or {}).items() if v)
        return (f"[{ctx}] {msg}" if ctx else msg), kwargs


def get_logger(
    name: str, run_id: str | None = None, stage: str | None = None, role: str | None = None
) -> ContextLogger:
    """A logger under ``chimera.<name>`` carrying run/stage/role context."""
    return ContextLogger(
        logging.getLogger(f"chimera.{name}"), {"run": run_id, "stage": stage, "role": role}
    )
