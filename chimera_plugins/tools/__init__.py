"""Built-in research tools: literature, clinical trials, proteins and Gene Ontology."""

from __future__ import annotations

from collections.abc import Callable

from chimera_core.plugins import Tool, hookimpl
from chimera_plugins.tools.clinical_trials import ClinicalTrialsSearch
from chimera_plugins.tools.gene_ontology import GeneOntologyLookup
from chimera_plugins.tools.protein import ProteinLookup
from chimera_plugins.tools.pubmed import PubMedSearch


@hookimpl
def register_tools(register: Callable[[Tool], None]) -> None:
    """Register the built-in tools."""
    register(PubMedSearch())
    register(ClinicalTrialsSearch())
    register(ProteinLookup())
    register(GeneOntologyLookup())
