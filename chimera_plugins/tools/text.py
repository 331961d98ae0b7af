"""Small text helpers shared by the tools: tokens for matching, and query-focused snippets."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9][a-z0-9\-]*[a-z0-9]|[a-z0-9]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")
# Question and function words: they match everything and so carry no retrieval signal.
STOPWORDS = frozenset(
    "a an and are as at be been being but by can could did do does done for from had has have "
    "how if in into is it its may might more most no not of on or our over than that the their "
    "them then there these they this those through to under was we were what when where whether "
    "which while who whom why will with within without would you your study studies patients "
    "patient among after before during between".split()
)
STEM_CHARS = 7


def tokens(text: str) -> list[str]:
    """Lower-case word tokens without stopwords."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def stem(token: str) -> str:
    """A crude stem: long words compare on their first letters (mitochondria ~ mitochondrion)."""
    return token[:STEM_CHARS] if len(token) > STEM_CHARS else token


def stems(text: str) -> set[str]:
    """The set of stems of a text's tokens."""
    return {stem(t) for t in tokens(text)}


def snippet(text: str, query: str, limit: int = 320) -> str:
    """The sentences of ``text`` that share most words with the query, in their order."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()]
    if not sentences:
        return ""
    wanted = stems(query)
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(stems(sentences[i]) & wanted), i))
    chosen: list[int] = []
    length = 0
    for i in ranked:
        if chosen and length + len(sentences[i]) > limit:
            break
        chosen.append(i)
        length += len(sentences[i]) + 1
    out = " ".join(sentences[i] for i in sorted(chosen))
    return out if len(out) <= limit else out[:limit].rsplit(" ", 1)[0] + " ..."
