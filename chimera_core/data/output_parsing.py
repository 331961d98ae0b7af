"""Lenient JSON from model replies: find it in prose or fences, validate, repair once, else default.

A tiny model wraps JSON in prose or code fences, uses single quotes or trailing commas, and runs
out of tokens mid-object. Extraction (json-repair) tolerates all of that; what still fails
validation gets one repair request showing the error, and after that the caller's safe default
is used and the failure is reported, so malformed output never crashes a rollout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import json_repair
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_MAX_RAW_CHARS = 600


class OutputError(ValueError):
    """A reply could not be turned into the expected object; the message says why."""


@dataclass
class ParseResult(Generic[T]):
    """The outcome of parsing one agent answer, with every failed attempt's reason."""

    value: T | None
    attempts: int
    errors: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether a valid object came out (possibly after the repair retry)."""
        return self.value is not None

    @property
    def raw(self) -> str:
        """The last reply, clipped (what an error record shows)."""
        return self.replies[-1][:_MAX_RAW_CHARS] if self.replies else ""

    @property
    def prose(self) -> str:
        """The first reply written as plain prose (no JSON braces), or empty."""
        return next((r.strip() for r in self.replies if r.strip() and "{" not in r), "")


def _objects(chunk: str) -> list[dict[str, Any]]:
    """The JSON objects json-repair reads in a chunk of a reply, in order.

    Strict mode first: it still closes a reply cut off by max_tokens, unquotes keys, drops
    trailing commas and reads Python literals, but refuses to guess. What it refuses (prose
    after the object, several objects, a value cut off after its key) is read leniently, where
    a repeated object counts as an update (the last one wins) and an object whose every value
    had to be made up ('') is noise, not an answer.
    """
    try:
        value = json_repair.loads(chunk, strict=True)
        lenient = False
    except (ValueError, RecursionError):
        try:
            value = json_repair.loads(chunk)
        except (ValueError, RecursionError):
            return []
        lenient = True
    found = value if isinstance(value, list) else [value]
    return [
        obj
        for obj in found
        if isinstance(obj, dict) and not (lenient and all(v == "" for v in obj.values()))
    ]


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object found in a reply (fenced or not); OutputError if there is none."""
    if not text or not text.strip():
        raise OutputError("the reply was empty; expected one JSON object")
    for chunk in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        if objects := _objects(chunk):
            return objects[0]
    raise OutputError("no JSON object found in the reply")


def _normalise_keys(obj: dict[str, Any], schema: type[BaseModel]) -> dict[str, Any]:
    """Map key variants ('Selected Index', 'selectedIndex') onto the schema's field names."""
    fields = {re.sub(r"[^a-z0-9]", "", name.lower()): name for name in schema.model_fields}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = fields.get(re.sub(r"[^a-z0-9]", "", str(key).lower()), str(key))
        out.setdefault(name, value)
    return out


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(object)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_output(text: str, schema: type[T], check: Callable[[T], str | None] | None = None) -> T:
    """Extract, normalise and validate one object; ``check`` adds task-specific rules."""
    obj = _normalise_keys(extract_json(text), schema)
    try:
        value = schema.model_validate(obj)
    except ValidationError as exc:
        raise OutputError(f"the JSON does not match the schema: {_describe(exc)}") from None
    if check and (problem := check(value)):
        raise OutputError(problem)
    return value


def parse_with_repair(
    text: str,
    schema: type[T],
    repair: Callable[[str], str],
    check: Callable[[T], str | None] | None = None,
) -> ParseResult[T]:
    """Parse; on failure ask ``repair(error)`` for a corrected reply once, then give up."""
    result: ParseResult[T] = ParseResult(value=None, attempts=0)
    for attempt in range(2):
        result.attempts = attempt + 1
        result.replies.append(text)
        try:
            result.value = parse_output(text, schema, check)
            return result
        except OutputError as exc:
            result.errors.append(str(exc))
        if attempt == 0:
            text = repair(result.errors[-1])
    return result
