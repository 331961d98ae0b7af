"""``pubmed_search``: literature search, offline over PubMedQA abstracts, online via E-utilities.

Both paths leave out the task's own PMID: its abstract (online, even its conclusion) would
give the answer away.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from chimera_core.plugins import ToolContext
from chimera_plugins.tools.http import HttpFetcher, shared_fetcher
from chimera_plugins.tools.pubmed_index import index_for
from chimera_plugins.tools.text import snippet

EUTILS = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
SNIPPET_CHARS = 220  # per hit: three hits fit the evidence budget of a small model's prompt


def _own_id(context: ToolContext) -> frozenset[str]:
    return frozenset({context.task.id}) if context.task is not None else frozenset()


def _abstracts(xml_text: str) -> list[tuple[str, str, str]]:
    """(PMID, title, abstract) triples from an efetch PubmedArticleSet document."""
    out = []
    for article in ET.fromstring(xml_text).iter("PubmedArticle"):
        pmid = article.findtext(".//MedlineCitation/PMID", default="").strip()
        title_node = article.find(".//ArticleTitle")
        title = "".join(title_node.itertext()).strip() if title_node is not None else ""
        parts = []
        for node in article.iter("AbstractText"):
            text = "".join(node.itertext()).strip()
            label = node.get("Label")
            parts.append(f"{label}: {text}" if label else text)
        out.append((pmid, title, " ".join(parts)))
    return out


class PubMedSearch:
    """Search biomedical literature for a free-text query."""

    name = "pubmed_search"
    description = (
        "Search biomedical literature (PubMed) for a free-text query; returns PMIDs with the "
        "most relevant sentences of each abstract."
    )

    def __init__(self, fetcher: HttpFetcher | None = None) -> None:
        self._fetcher = fetcher

    def run(self, query: str, context: ToolContext) -> str:
        """Online results when ``tools.online`` (offline index if that fails), else offline."""
        if context.config.tools.online:
            try:
                return self.online(query, context)
            except Exception as exc:
                note = f"(NCBI unavailable: {type(exc).__name__}; offline index used)\n"
                return note + self.offline(query, context)
        return self.offline(query, context)

    def offline(self, query: str, context: ToolContext) -> str:
        """BM25 over the PubMedQA contexts, the current task's record excluded."""
        k = context.config.tools.top_k
        hits = index_for(context.config.data).search(query, k, exclude=_own_id(context))
        if not hits:
            return f'PubMed (offline PubMedQA index): no abstracts match "{query[:80]}".'
        lines = [f'PubMed (offline PubMedQA index), top {len(hits)} for "{query[:80]}":']
        lines += [f"PMID {doc.pmid}: {snippet(doc.text, query, SNIPPET_CHARS)}" for doc, _ in hits]
        return "\n".join(lines)

    def online(self, query: str, context: ToolContext) -> str:
        """esearch for PMIDs, then efetch their abstracts; the task's own PMID is dropped."""
        tools = context.config.tools
        fetcher = self._fetcher or shared_fetcher(tools)
        common: dict[str, str | int] = {"db": "pubmed", "tool": "chimera-lab"}
        if tools.ncbi_api_key is not None:
            common["api_key"] = tools.ncbi_api_key.get_secret_value()
        found = fetcher.get_json(
            f"{EUTILS}/esearch.fcgi",
            {**common, "term": query, "retmax": tools.top_k + 1, "retmode": "json"},
        )
        own = _own_id(context)
        ids = [i for i in found.get("esearchresult", {}).get("idlist", []) if i not in own]
        ids = ids[: tools.top_k]
        if not ids:
            return f'PubMed (NCBI): no articles match "{query[:80]}".'
        xml_text = fetcher.get_text(
            f"{EUTILS}/efetch.fcgi", {**common, "id": ",".join(ids), "retmode": "xml"}
        )
        lines = [f'PubMed (NCBI), top {len(ids)} for "{query[:80]}":']
        for pmid, title, abstract in _abstracts(xml_text):
            if pmid in own:
                continue
            lines.append(f"PMID {pmid}: {title} {snippet(abstract, query, SNIPPET_CHARS)}".strip())
        return "\n".join(lines)
