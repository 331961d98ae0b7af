"""Small reference tables shipped with Chimera, searched by word overlap when offline."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from chimera_plugins.tools.text import stems, tokens


@cache
def load_table(filename: str) -> tuple[dict[str, Any], ...]:
    """Entries of ``chimera_plugins/data/<filename>`` (read once)."""
    text = resources.files("chimera_plugins").joinpath("data", filename).read_text()
    return tuple(json.loads(text)["entries"])


def match(
    entries: Sequence[dict[str, Any]], query: str, fields: Sequence[str], key: str, k: int
) -> list[dict[str, Any]]:
    """Entries ranked by the IDF-weighted word stems they share with the query.

    Rare words (``mitochondria``) outweigh common ones (``cell``); an exact hit on ``key``
    (a gene symbol, a GO id) ranks first.
    """
    wanted = stems(query)
    exact = {t.upper() for t in tokens(query)}
    words = []
    for entry in entries:
        bag: set[str] = set()
        for name in fields:
            value = entry.get(name, "")
            bag |= stems(" ".join(value) if isinstance(value, list) else str(value))
        words.append(bag)
    df = Counter(w for bag in words for w in bag)
    scored = []
    for i, (entry, bag) in enumerate(zip(entries, words, strict=True)):
        score = sum(math.log(1 + len(entries) / df[w]) for w in bag & wanted)
        if str(entry.get(key, "")).upper() in exact:
            score += 100.0
        if score:
            scored.append((-score, i, entry))
    return [entry for _, _, entry in sorted(scored, key=lambda s: s[:2])[:k]]
