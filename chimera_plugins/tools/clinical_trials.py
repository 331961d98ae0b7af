"""``clinical_trials_search``: registered trials from ClinicalTrials.gov API v2 (online only)."""

from __future__ import annotations

from typing import Any

from chimera_core.plugins import ToolContext
from chimera_plugins.tools.http import HttpFetcher, shared_fetcher
from chimera_plugins.tools.text import snippet

API = "https://clinicaltrials.gov/api/v2/studies"
FIELDS = "NCTId,BriefTitle,OverallStatus,Phase,Condition,InterventionName,BriefSummary"
OFFLINE = (
    "clinical_trials_search is unavailable offline (tools.online is false): no trial registry "
    "data was retrieved."
)


def _describe(study: dict[str, Any], query: str) -> str:
    section = study.get("protocolSection", {})
    ident = section.get("identificationModule", {})
    status = section.get("statusModule", {}).get("overallStatus", "status unknown")
    phases = section.get("designModule", {}).get("phases") or []
    conditions = section.get("conditionsModule", {}).get("conditions") or []
    interventions = [
        i.get("name", "")
        for i in section.get("armsInterventionsModule", {}).get("interventions", [])
    ]
    summary = section.get("descriptionModule", {}).get("briefSummary", "")
    parts = [
        f"{ident.get('nctId', '?')}: {ident.get('briefTitle', '(untitled)')}",
        f"[{status}{', ' + '/'.join(phases) if phases else ''}]",
    ]
    if conditions:
        parts.append("conditions: " + ", ".join(conditions[:3]))
    if interventions:
        parts.append("interventions: " + ", ".join(interventions[:3]))
    if summary:
        parts.append("- " + snippet(summary, query, limit=200))
    return " ".join(parts)


class ClinicalTrialsSearch:
    """Search registered clinical trials for a free-text query."""

    name = "clinical_trials_search"
    description = (
        "Search ClinicalTrials.gov for registered trials matching a free-text query (condition, "
        "intervention); returns NCT ids, titles, status and phase."
    )

    def __init__(self, fetcher: HttpFetcher | None = None) -> None:
        self._fetcher = fetcher

    def run(self, query: str, context: ToolContext) -> str:
        """Trials from the registry; an explicit 'unavailable' text offline or on failure."""
        tools = context.config.tools
        if not tools.online:
            return OFFLINE
        fetcher = self._fetcher or shared_fetcher(tools)
        try:
            data = fetcher.get_json(
                API,
                {"query.term": query, "pageSize": tools.top_k, "format": "json", "fields": FIELDS},
            )
        except Exception as exc:
            return f"clinical_trials_search: ClinicalTrials.gov unavailable ({type(exc).__name__})."
        studies = data.get("studies") or []
        if not studies:
            return f'ClinicalTrials.gov: no trials match "{query[:80]}".'
        lines = [f'ClinicalTrials.gov, top {len(studies)} for "{query[:80]}":']
        lines += [_describe(s, query) for s in studies[: tools.top_k]]
        return "\n".join(lines)
