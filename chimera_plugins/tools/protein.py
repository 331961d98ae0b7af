"""``protein_database_lookup``: human proteins from a bundled table, and UniProt when online."""

from __future__ import annotations

from typing import Any

from chimera_core.plugins import ToolContext
from chimera_plugins.tools.bundled import load_table, match
from chimera_plugins.tools.fallback import OnlineWithFallback
from chimera_plugins.tools.http import shared_fetcher
from chimera_plugins.tools.text import tokens

UNIPROT = "https://rest.uniprot.org/uniprotkb/search"
MAX_QUERY_TERMS = 6


def _uniprot_line(entry: dict[str, Any]) -> str:
    genes = [g.get("geneName", {}).get("value", "") for g in entry.get("genes", [])]
    name = (
        entry.get("proteinDescription", {})
        .get("recommendedName", {})
        .get("fullName", {})
        .get("value", "(unnamed)")
    )
    function = next(
        (
            text.get("value", "")
            for c in entry.get("comments", [])
            if c.get("commentType") == "FUNCTION"
            for text in c.get("texts", [])
        ),
        "",
    )
    gene = f" ({genes[0]})" if genes and genes[0] else ""
    return f"{entry.get('primaryAccession', '?')}{gene} {name}: {function[:240]}".strip()


class ProteinLookup(OnlineWithFallback):
    """Look up human proteins by gene symbol, name or topic."""

    service = "UniProt"
    name = "protein_database_lookup"
    description = (
        "Look up human proteins by gene symbol, protein name or topic; returns UniProt "
        "accessions, names and functions."
    )

    def offline(self, query: str, context: ToolContext) -> str:
        """Matches in the bundled table of well-known human proteins."""
        table = load_table("proteins.json")
        hits = match(table, query, ("gene", "name", "keywords"), "gene", context.config.tools.top_k)
        if not hits:
            return (
                f"protein_database_lookup (bundled table of {len(table)} human proteins): no "
                f'entry matches "{query[:80]}".'
            )
        lines = [f"protein_database_lookup (bundled table), {len(hits)} match(es):"]
        lines += [f"{e['accession']} ({e['gene']}) {e['name']}: {e['function']}" for e in hits]
        return "\n".join(lines)

    def online(self, query: str, context: ToolContext) -> str:
        """UniProtKB search among reviewed human entries; empty text when nothing matched."""
        tools = context.config.tools
        terms = tokens(query)[:MAX_QUERY_TERMS]
        if not terms:
            return ""
        fetcher = self._fetcher or shared_fetcher(tools)
        data = fetcher.get_json(
            UNIPROT,
            {
                "query": f"({' OR '.join(terms)}) AND (organism_id:9606) AND (reviewed:true)",
                "fields": "accession,gene_names,protein_name,cc_function",
                "format": "json",
                "size": tools.top_k,
            },
        )
        results = data.get("results") or []
        if not results:
            return ""
        lines = [f"UniProt, top {len(results)} human entries:"]
        lines += [_uniprot_line(r) for r in results[: tools.top_k]]
        return "\n".join(lines)
