"""Experiment tracking: a local metrics JSONL (always) and W&B (offline by default).

W&B never needs an API key here: ``offline`` writes run files under ``tracking.wandb_dir``
(``wandb sync`` uploads them later), ``online`` needs a key, ``disabled`` is a no-op.
``WANDB_MODE`` in the environment overrides the profile's mode.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from chimera_core.config.models import TrackingConfig
from chimera_core.logs import get_logger


class Tracker:
    """Logs metric dicts for one run and stage to JSONL and W&B."""

    def __init__(
        self, config: TrackingConfig, run_id: str, stage: str, jsonl_path: Path | None = None
    ) -> None:
        self.run_id = run_id
        self.stage = stage
        self.jsonl_path = jsonl_path if config.metrics_jsonl else None
        self.mode = os.environ.get("WANDB_MODE") or config.wandb_mode
        self._log = get_logger("tracking", run_id=run_id, stage=stage)
        self._wandb: Any = None
        if self.mode != "disabled":
            self._wandb = self._init_wandb(config)

    def _init_wandb(self, config: TrackingConfig) -> Any:
        try:
            import wandb

            config.wandb_dir.mkdir(parents=True, exist_ok=True)
            # silent=True does not cover W&B's "install Weave" hint, printed on every stage
            # because LangChain and OpenAI are imported; WANDB_DISABLE_WEAVE=false brings it back.
            os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
            return wandb.init(
                project=config.wandb_project,
                name=f"{self.run_id}-{self.stage}",
                group=self.run_id,
                job_type=self.stage,
                dir=str(config.wandb_dir),
                mode=self.mode,  # type: ignore[arg-type]
                reinit="create_new",
                settings=wandb.Settings(silent=True, console="off"),
            )
        except Exception as exc:  # tracking must never kill a stage
            self._log.warning("W&B unavailable (%s); metrics go to JSONL only", exc)
            return None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Record one metrics dict (numbers, strings) at an optional step."""
        record = {"time": round(time.time(), 3), "step": step, **metrics}
        if self.jsonl_path is not None:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            with self.jsonl_path.open("a") as fh:
                fh.write(json.dumps(record, default=str) + "\n")
        if self._wandb is not None:
            numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            self._wandb.log(numeric, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final values shown on the W&B run page."""
        if self._wandb is not None:
            for key, value in metrics.items():
                self._wandb.summary[key] = value

    def close(self) -> None:
        """Finish the W&B run (files flushed)."""
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
