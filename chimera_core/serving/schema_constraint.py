"""Schema mode: decoding that follows a flat JSON schema's keys exactly, the model fills values.

A tiny model asked for ``{"novelty": ..., "clarity": ...}`` answers with whatever JSON it likes
(often an echo of its input), even in JSON mode. For an object schema whose properties are all
numbers, integers, booleans, strings or enums, the keys and punctuation are fixed text and only
the values are generated, each by its own small grammar. Other schemas fall back to JSON mode.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_STRING_CHARS = 400
_NUMBER_PREFIX = re.compile(r"-?|-?(0|[1-9]\d{0,5})(\.\d{0,4})?")
_NUMBER = re.compile(r"-?(0|[1-9]\d{0,5})(\.\d{1,4})?")
_INTEGER_PREFIX = re.compile(r"-?|-?(0|[1-9]\d{0,8})")
_STRING_ESCAPES = frozenset('"\\/bfnrt')


@dataclass(frozen=True)
class Slot:
    """A value to generate: ``kind`` is number, integer, string or enum (JSON texts in choices)."""

    kind: str
    choices: tuple[str, ...] = ()
    signed: bool = True

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is a prefix of some value this slot allows."""
        if self.kind == "enum":
            return any(c.startswith(text) for c in self.choices)
        if self.kind == "string":
            return _string_prefix(text)
        if not self.signed and text.startswith("-"):
            return False
        pattern = _NUMBER_PREFIX if self.kind == "number" else _INTEGER_PREFIX
        return pattern.fullmatch(text) is not None

    def complete(self, text: str) -> bool:
        """Whether ``text`` is a whole value."""
        if self.kind == "enum":
            return text in self.choices
        if self.kind == "string":
            return _string_closed(text)
        if self.kind == "integer":
            return bool(text) and text != "-" and _INTEGER_PREFIX.fullmatch(text) is not None
        return _NUMBER.fullmatch(text) is not None

    def self_delimiting(self, text: str) -> bool:
        """Whether a complete ``text`` can only end here (a closing quote), unlike a number."""
        if self.kind == "string":
            return True
        return self.kind == "enum" and not any(
            c != text and c.startswith(text) for c in self.choices
        )


def _string_prefix(text: str) -> bool:
    if not text:
        return True
    if text[0] != '"' or len(text) > MAX_STRING_CHARS:
        return False
    escaped = False
    for i, ch in enumerate(text[1:], start=1):
        if escaped:
            if ch not in _STRING_ESCAPES:
                return False
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return i == len(text) - 1  # nothing may follow the closing quote
        elif ord(ch) < 0x20:
            return False
    return True


def _string_closed(text: str) -> bool:
    if len(text) < 2 or not text.endswith('"') or not _string_prefix(text):
        return False
    backslashes = len(text[1:-1]) - len(text[1:-1].rstrip("\\"))
    return backslashes % 2 == 0


@dataclass(frozen=True)
class SchemaTemplate:
    """The fixed text and value slots of one flat object schema, in order."""

    parts: tuple[str | Slot, ...]


def _slot(prop: dict[str, Any]) -> Slot | None:
    if "enum" in prop:
        return Slot("enum", tuple(json.dumps(v) for v in prop["enum"]))
    kind = prop.get("type")
    if kind == "boolean":
        return Slot("enum", ("true", "false"))
    if kind in ("number", "integer"):
        low = prop.get("minimum", prop.get("exclusiveMinimum"))
        return Slot(kind, signed=not (isinstance(low, int | float) and low >= 0))
    if kind == "string":
        return Slot("string")
    return None


def compile_flat_schema(schema: dict[str, Any]) -> SchemaTemplate | None:
    """A template for an object of simple properties; None when the schema is anything else."""
    body = schema.get("schema", schema)  # OpenAI wraps it: {"name": ..., "schema": {...}}
    if not isinstance(body, dict) or body.get("type") != "object":
        return None
    properties = body.get("properties")
    if not isinstance(properties, dict) or not properties:
        return None
    parts: list[str | Slot] = []
    for i, (key, prop) in enumerate(properties.items()):
        slot = _slot(prop) if isinstance(prop, dict) else None
        if slot is None:
            return None
        parts += [("{" if i == 0 else ", ") + json.dumps(key) + ": ", slot]
    parts.append("}")
    return SchemaTemplate(tuple(parts))


class SchemaPrefix:
    """State of a text read against a template; same interface as ``JsonPrefix``."""

    __slots__ = ("buf", "index", "template")

    def __init__(self, template: SchemaTemplate) -> None:
        self.template = template
        self.index = 0  # the part being read
        self.buf = ""  # what was read of it so far

    def copy(self) -> SchemaPrefix:
        """An independent copy (for trying a candidate token)."""
        other = SchemaPrefix(self.template)
        other.index, other.buf = self.index, self.buf
        return other

    @property
    def complete(self) -> bool:
        """Whether the closing brace has been read."""
        return self.index == len(self.template.parts)

    def accepts(self, text: str) -> bool:
        """Whether ``text`` can follow (state unchanged)."""
        return self.copy().feed(text)

    def feed(self, text: str) -> bool:
        """Advance over ``text``; False as soon as it leaves the template."""
        return all(self._char(ch) for ch in text)

    def _char(self, ch: str) -> bool:
        parts = self.template.parts
        while self.index < len(parts):
            part = parts[self.index]
            if isinstance(part, str):
                if part[len(self.buf)] != ch:
                    return False
                self._extend(ch, len(self.buf) + 1 == len(part))
                return True
            if part.accepts(self.buf + ch):
                grown = self.buf + ch
                self._extend(ch, part.complete(grown) and part.self_delimiting(grown))
                return True
            if not part.complete(self.buf):
                return False
            self._extend("", True)  # a number ends where the next fixed text begins
        return False

    def _extend(self, ch: str, part_done: bool) -> None:
        if part_done:
            self.index, self.buf = self.index + 1, ""
        else:
            self.buf += ch
