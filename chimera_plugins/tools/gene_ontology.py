"""``gene_ontology_lookup``: GO terms from a bundled table, and QuickGO when online."""

from __future__ import annotations

from typing import Any

from chimera_core.plugins import ToolContext
from chimera_plugins.tools.bundled import load_table, match
from chimera_plugins.tools.fallback import OnlineWithFallback
from chimera_plugins.tools.http import shared_fetcher
from chimera_plugins.tools.text import tokens

QUICKGO = "https://www.ebi.ac.uk/QuickGO/services/ontology/go/search"
MAX_QUERY_TERMS = 6


def _term_line(term: dict[str, Any]) -> str:
    definition = term.get("definition")
    text = definition.get("text", "") if isinstance(definition, dict) else str(definition or "")
    aspect = str(term.get("aspect", "")).replace("_", " ")
    return f"{term.get('id', '?')} {term.get('name', '')} ({aspect}): {text[:240]}"


class GeneOntologyLookup(OnlineWithFallback):
    """Look up Gene Ontology terms (processes, functions, components) for a topic."""

    service = "QuickGO"
    name = "gene_ontology_lookup"
    description = (
        "Look up Gene Ontology terms (biological processes, molecular functions, cellular "
        "components) for a topic; returns GO ids, names and definitions."
    )

    def offline(self, query: str, context: ToolContext) -> str:
        """Matches in the bundled table of common GO terms."""
        table = load_table("go_terms.json")
        hits = match(table, query, ("name", "keywords"), "id", context.config.tools.top_k)
        if not hits:
            return (
                f"gene_ontology_lookup (bundled table of {len(table)} GO terms): no term "
                f'matches "{query[:80]}".'
            )
        lines = [f"gene_ontology_lookup (bundled table), {len(hits)} match(es):"]
        lines += [_term_line(e) for e in hits]
        return "\n".join(lines)

    def online(self, query: str, context: ToolContext) -> str:
        """QuickGO ontology search, obsolete terms left out; empty text when nothing matched."""
        tools = context.config.tools
        terms = tokens(query)[:MAX_QUERY_TERMS]
        if not terms:
            return ""
        fetcher = self._fetcher or shared_fetcher(tools)
        data = fetcher.get_json(QUICKGO, {"query": " ".join(terms), "limit": tools.top_k + 2})
        results = [r for r in data.get("results") or [] if not r.get("isObsolete")]
        if not results:
            return ""
        lines = [f"QuickGO, top {min(len(results), tools.top_k)} GO terms:"]
        lines += [_term_line(r) for r in results[: tools.top_k]]
        return "\n".join(lines)
