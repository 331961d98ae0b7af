"""Offline BM25 index over the PubMedQA abstracts' context paragraphs, built once per process.

Documents come from ``ResearchTask.context``: the loader has already dropped LONG_ANSWER (the
abstract's conclusion) and the labels, so neither can reach an agent through search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rank_bm25 import BM25Okapi

from chimera_core.plugins import DataConfig, ResearchTask, load_pubmedqa_tasks
from chimera_plugins.tools.text import tokens


@dataclass(frozen=True)
class Document:
    """One indexed abstract: its PMID and its context paragraphs."""

    pmid: str
    text: str


class PubMedQAIndex:
    """BM25 (Okapi) over documents; search can exclude PMIDs (the task's own record)."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = list(documents)
        # rank-bm25 divides by the corpus size; an empty corpus gets a placeholder document.
        corpus = [tokens(d.text) or ["_"] for d in self.documents] or [["_"]]
        self._bm25 = BM25Okapi(corpus)

    @classmethod
    def from_tasks(cls, tasks: Iterable[ResearchTask]) -> PubMedQAIndex:
        """Index the tasks' contexts (never their labels)."""
        return cls([Document(t.id, t.context) for t in tasks])

    def search(
        self, query: str, k: int, exclude: frozenset[str] = frozenset()
    ) -> list[tuple[Document, float]]:
        """The k best-scoring documents with a positive score, excluded PMIDs left out."""
        terms = tokens(query)
        if not terms or not self.documents:
            return []
        scores = self._bm25.get_scores(terms)
        ranked = sorted(range(len(self.documents)), key=lambda i: -scores[i])
        hits = [
            (self.documents[i], float(scores[i]))
            for i in ranked
            if scores[i] > 0 and self.documents[i].pmid not in exclude
        ]
        return hits[:k]


_indexes: dict[tuple[str, ...], PubMedQAIndex] = {}
_lock = threading.Lock()
builds = 0  # how many indexes this process built (the cache is working if this stays small)


def source_key(config: DataConfig) -> tuple[str, ...]:
    """Identity of a data source: a file (with its modification time) or a Hub dataset."""
    if config.source == "file" and config.file is not None:
        path = config.file.resolve()
        mtime = str(path.stat().st_mtime_ns) if path.exists() else "missing"
        return ("file", str(path), mtime)
    return ("hub", config.hub_dataset, config.hub_config)


def index_for(
    config: DataConfig, loader: Callable[[DataConfig], list[ResearchTask]] = load_pubmedqa_tasks
) -> PubMedQAIndex:
    """The process-wide index of a data source, built on first use (thread-safe)."""
    global builds
    key = source_key(config)
    with _lock:
        if key not in _indexes:
            _indexes[key] = PubMedQAIndex.from_tasks(loader(config))
            builds += 1
        return _indexes[key]


def clear_cache() -> None:
    """Forget built indexes (tests, or after the source file changed on disk)."""
    with _lock:
        _indexes.clear()
