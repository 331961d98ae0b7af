"""A rich progress bar for transformers/TRL trainers (instead of tqdm and printed dicts)."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import TrainerCallback


class RichProgressCallback(TrainerCallback):
    """Shows steps done, the last loss and time left; keeps every log record."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.history: list[dict[str, Any]] = []
        self._progress: Progress | None = None
        self._task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=state.max_steps, loss="-")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not logs:
            return
        self.history.append(dict(logs))
        if isinstance(logs.get("loss"), int | float) and self._progress is not None:
            self._progress.update(self._task, loss=f"{logs['loss']:.3f}")

    def series(self, key: str) -> list[float]:
        """Every logged value of one metric (e.g. "loss", "reward"), in order."""
        return [float(h[key]) for h in self.history if isinstance(h.get(key), int | float)]

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def quiet_trainer(trainer: Any, callback: RichProgressCallback) -> None:
    """Replace the trainer's printed logs and tqdm bar with the rich callback."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(callback)
