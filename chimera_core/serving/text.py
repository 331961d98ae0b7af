"""Incremental detokenization with stop strings, for streaming and for cutting the output."""

from __future__ import annotations

from collections.abc import Callable, Sequence

_PARTIAL = "\ufffd"  # what a decoder shows for an incomplete UTF-8 sequence


class TextTracker:
    """Turns generated token ids into text released in safe pieces.

    Text is held back while it may still change (an incomplete multi-byte character) or may be
    the start of a stop string; once a stop string appears the text is cut before it.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._longest = max((len(s) for s in self._stop), default=0)
        self.ids: list[int] = []
        self.text = ""
        self.released = 0
        self.stopped = False

    def add(self, token_id: int) -> str:
        """Append a token; return the newly releasable text (sets ``stopped`` on a stop string)."""
        self.ids.append(token_id)
        checked = len(self.text)
        self.text = self._decode(self.ids)
        if self._stop:
            start = max(0, checked - self._longest)
            hits = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
                return self._release(len(self.text))
        safe = len(self.text.rstrip(_PARTIAL)) if self.text.endswith(_PARTIAL) else len(self.text)
        safe -= self._stop_prefix_len(self.text[:safe])
        return self._release(max(safe, self.released))

    def flush(self) -> str:
        """Release everything still held (the sequence ended without a stop string)."""
        return self._release(len(self.text))

    def _stop_prefix_len(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that begins some stop string."""
        for size in range(min(self._longest, len(text)), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self._stop):
                return size
        return 0

    def _release(self, upto: int) -> str:
        piece = self.text[self.released : upto]
        self.released = max(self.released, upto)
        return piece
