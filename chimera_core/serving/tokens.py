"""One tokenizer's jobs for the server: chat rendering, encode/decode, per-token text pieces."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any


class TokenCodec:
    """Thread-safe text <-> token ids for one model (the engine decodes while routes encode)."""

    def __init__(self, tokenizer: Any, eos_token_id: int | Sequence[int] | None = None) -> None:
        self.tokenizer = tokenizer
        # The Rust tokenizer encodes/decodes without the Python wrapper's padding/truncation
        # state, whose mutation from two threads raises "Already borrowed".
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._lock = threading.Lock()
        self._pieces: dict[int, str | None] = {}
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        self.special_ids = frozenset(
            [*tokenizer.all_special_ids, *(i for i, t in added.items() if t.special)]
        )
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        if isinstance(eos_token_id, int):
            eos.add(eos_token_id)
        elif eos_token_id is not None:
            eos.update(eos_token_id)
        self.eos_ids = frozenset(eos)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids or {0}))
        self.vocab_size = len(tokenizer)
        template = tokenizer.chat_template or ""
        self.has_chat_template = bool(template)
        # Templates that read `tools` (Qwen, Hermes) render tool specs themselves.
        self.template_renders_tools = "tools" in template
        self._anchor = self.encode("a")[-1:]
        self._anchor_text = self.decode(self._anchor)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without extra special tokens (the chat template has them)."""
        if self._backend is not None:
            return list(self._backend.encode(text, add_special_tokens=False).ids)
        with self._lock:
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` with special tokens (EOS, chat markers) dropped."""
        ids = list(ids)
        if self._backend is not None:
            return str(self._backend.decode(ids, skip_special_tokens=True))
        with self._lock:
            return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def piece(self, token_id: int) -> str | None:
        """Text one token adds after others (None for special tokens); cached."""
        if token_id in self._pieces:
            return self._pieces[token_id]
        text: str | None = None
        if token_id not in self.special_ids:
            # Decoding after an anchor keeps leading spaces that SentencePiece drops alone.
            text = self.decode([*self._anchor, token_id])[len(self._anchor_text) :]
        self._pieces[token_id] = text
        return text

    def token_text(self, token_id: int) -> str:
        """Display text of a token for logprobs (special tokens keep their marker)."""
        piece = self.piece(token_id)
        if piece is not None:
            return piece
        return str(self.tokenizer.convert_ids_to_tokens(token_id))

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        """The prompt text for a chat, ending with the assistant turn's header."""
        kwargs: dict[str, Any] = {"tools": tools} if tools else {}
        with self._lock:
            return str(
                self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True, **kwargs
                )
            )
