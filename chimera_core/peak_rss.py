"""Peak memory of a block of work, counting the child processes it starts (rollout sessions)."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


def tree_rss_bytes(proc: psutil.Process) -> int:
    """Resident memory of a process plus all its live descendants."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakRSS:
    """Samples this process tree's RSS in a thread; ``peak_mb`` is the largest sum seen.

    ``ru_maxrss`` cannot do this: it is a lifetime maximum, so in a pipeline every stage after the
    biggest one would report that one's peak, and it never sums a parent with its children.
    """

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._proc = psutil.Process()

    @property
    def peak_mb(self) -> float:
        """The peak so far, in MiB."""
        return round(self.peak_bytes / 2**20, 1)

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self._proc))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakRSS:
        self.peak_bytes = tree_rss_bytes(self._proc)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
