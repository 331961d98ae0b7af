"""Lenient JSON from model replies: find it in prose or fences, validate, repair once, else default.

A tiny model wraps JSON in prose or code fences, uses single quotes or trailing commas, and runs
out of tokens mid-object. Extraction tolerates all of that; what still fails validation gets one
repair request showing the error, and after that the caller's safe default is used and the
failure is reported, so malformed output never crashes a rollout.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
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


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` span, plus an unterminated tail closed as well as possible."""
    spans: list[str] = []
    depth = 0
    start = -1
    in_str: str | None = None
    escaped = False
    stack: list[str] = []
    for i, ch in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_str:
                in_str = None
            continue
        if ch in "\"'" and depth:
            in_str = ch
        elif ch in "{[":
            if depth == 0 and ch == "{":
                start = i
            if depth or ch == "{":
                depth += 1
                stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and depth:
            depth -= 1
            stack.pop()
            if depth == 0:
                spans.append(text[start : i + 1])
    if depth and start >= 0:
        # Cut off by max_tokens: close the open string and brackets.
        tail = text[start:].rstrip()
        if in_str:
            tail += in_str
        if stack[-1] == "}":  # inside an object: drop a dangling key, null a missing value
            tail = re.sub(r',\s*(?:"[^"]*"\s*)?$', "", tail)
            tail = re.sub(r":\s*$", ": null", tail)
        else:
            tail = re.sub(r",\s*$", "", tail)
        spans.append(tail + "".join(reversed(stack)))
    return spans


def _loads(candidate: str) -> Any:
    """json.loads, then the same without trailing commas, then a Python literal."""
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    cleaned = _TRAILING_COMMA.sub(r"\1", candidate)
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError:
        pass
    py = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", cleaned))
    py = re.sub(r"\bnull\b", "None", py)
    try:
        return ast.literal_eval(py)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object found in a reply (fenced or not); OutputError if there is none."""
    if not text or not text.strip():
        raise OutputError("the reply was empty; expected one JSON object")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for chunk in candidates:
        for span in _balanced_objects(chunk):
            obj = _loads(span)
            if isinstance(obj, dict):
                return obj
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
