"""The built-in tools: offline index without leakage, online APIs from recorded responses."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import chimera_plugins.tools as builtin_tools
from chimera_core.config import ChimeraConfig, load_config
from chimera_core.data import ResearchTask
from chimera_core.plugins import Tool, ToolContext
from chimera_plugins.tools import pubmed_index
from chimera_plugins.tools.clinical_trials import OFFLINE, ClinicalTrialsSearch
from chimera_plugins.tools.gene_ontology import GeneOntologyLookup
from chimera_plugins.tools.http import HttpFetcher
from chimera_plugins.tools.protein import ProteinLookup
from chimera_plugins.tools.pubmed import PubMedSearch

SECRET = "zebrafinchquux"  # appears only in a LONG_ANSWER and a label field
RECORDS = {
    "1001": {
        "QUESTION": "Does statin therapy reduce stroke risk in elderly adults?",
        "CONTEXTS": [
            "Statin therapy was given to elderly adults with hypercholesterolemia.",
            "Stroke incidence was recorded over five years of follow-up.",
        ],
        "LONG_ANSWER": f"Statins reduce stroke risk; {SECRET} confirms it.",
        "final_decision": "yes",
    },
    "1002": {
        "QUESTION": "Is statin use linked to stroke in elderly patients with diabetes?",
        "CONTEXTS": ["Elderly diabetic adults using statins had fewer strokes than non-users."],
        "LONG_ANSWER": f"{SECRET} yes.",
        "final_decision": "yes",
    },
    "1003": {
        "QUESTION": "Does exercise improve sleep quality?",
        "CONTEXTS": ["Adults in an exercise programme reported better sleep quality scores."],
        "LONG_ANSWER": "Exercise improves sleep.",
        "final_decision": "maybe",
    },
}


def _config(
    online: bool = False, data_file: Path | None = None, extra: dict[str, Any] | None = None
) -> ChimeraConfig:
    overrides: dict[str, Any] = {"tools.online": online, **(extra or {})}
    if data_file is not None:
        overrides |= {"data.source": "file", "data.file": str(data_file)}
    return load_config("local", environ={}, overrides=overrides)


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "pqal.json"
    path.write_text(json.dumps(RECORDS))
    pubmed_index.clear_cache()
    return path


def _ctx(config: ChimeraConfig, task_id: str = "1001", role: str = "Geneticist") -> ToolContext:
    task = ResearchTask(id=task_id, goal="q", context="c", expected_decision="yes")
    return ToolContext(config=config, task=task, role=role)


def test_builtin_plugin_registers_the_four_tools() -> None:
    registered: list[Tool] = []
    builtin_tools.register_tools(register=registered.append)
    assert sorted(t.name for t in registered) == [
        "clinical_trials_search",
        "gene_ontology_lookup",
        "protein_database_lookup",
        "pubmed_search",
    ]
    assert all(isinstance(t, Tool) and t.description for t in registered)


def test_pubmed_offline_excludes_the_task_and_never_indexes_long_answer(small_file: Path) -> None:
    config = _config(data_file=small_file)
    tool = PubMedSearch()
    text = tool.run("statin stroke elderly adults", _ctx(config, "1001"))
    assert "PMID 1002" in text and "PMID 1001" not in text
    assert "fewer strokes" in text
    other = tool.run("statin stroke elderly adults", _ctx(config, "1003"))
    assert "PMID 1001" in other and "PMID 1002" in other
    leak = tool.run(SECRET, _ctx(config, "1003"))
    assert "no abstracts match" in leak and "PMID" not in leak
    index = pubmed_index.index_for(config.data)
    assert all(SECRET not in d.text and "final_decision" not in d.text for d in index.documents)
    assert {d.pmid for d in index.documents} == set(RECORDS)


def test_bm25_index_is_built_once_per_process(small_file: Path) -> None:
    config = _config(data_file=small_file)
    before = pubmed_index.builds
    tool = PubMedSearch()
    threads = [threading.Thread(target=tool.run, args=("statin", _ctx(config))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tool.run("sleep", _ctx(config))
    assert pubmed_index.builds == before + 1


def test_pubmed_offline_on_the_real_pubmedqa(pubmedqa_file: Path) -> None:
    config = _config(data_file=pubmedqa_file)
    raw = json.loads(pubmedqa_file.read_text())["21645374"]
    text = PubMedSearch().run(raw["QUESTION"], _ctx(config, "21645374"))
    assert text.count("PMID ") == config.tools.top_k
    assert "PMID 21645374" not in text
    long_answer_sentence = raw["LONG_ANSWER"].split(".")[0]
    assert long_answer_sentence not in text


Handler = Callable[[httpx.Request], httpx.Response]


def _fetcher(handler: Handler) -> tuple[HttpFetcher, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return HttpFetcher(
        timeout_s=1, max_retries=2, backoff_s=0, transport=httpx.MockTransport(record)
    ), seen


ESEARCH = {
    "header": {"type": "esearch", "version": "0.3"},
    "esearchresult": {
        "count": "3",
        "retmax": "4",
        "retstart": "0",
        "idlist": ["21645374", "30000001", "30000002"],
        "translationset": [],
        "querytranslation": "mitochondria[All Fields] AND plants[All Fields]",
    },
}
EFETCH = "\n".join(
    [
        '<?xml version="1.0" ?>',
        '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
        '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">',
        "<PubmedArticleSet>",
        '<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">',
        '<PMID Version="1">30000001</PMID><Article PubModel="Print">',
        "<ArticleTitle>Mitochondrial dynamics during plant cell death.</ArticleTitle>",
        '<Abstract><AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Mitochondria '
        "change shape early in programmed cell death.</AbstractText>",
        '<AbstractText Label="RESULTS" NlmCategory="RESULTS">Cyclosporin A delayed '
        "<i>mitochondrial</i> permeability transition.</AbstractText></Abstract>",
        "</Article></MedlineCitation></PubmedArticle>",
        '<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">',
        '<PMID Version="1">30000002</PMID><Article PubModel="Print">',
        "<ArticleTitle>Leaf remodelling in aquatic plants.</ArticleTitle>",
        "<Abstract><AbstractText>Perforations form between veins.</AbstractText></Abstract>",
        "</Article></MedlineCitation></PubmedArticle>",
        "</PubmedArticleSet>",
    ]
)


def test_pubmed_online_uses_eutilities_and_drops_the_own_pmid() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("esearch.fcgi"):
            return httpx.Response(200, json=ESEARCH)
        assert request.url.params["id"] == "30000001,30000002"
        return httpx.Response(200, text=EFETCH)

    fetcher, seen = _fetcher(handler)
    config = _config(online=True, extra={"tools.ncbi_api_key": "k3y"})
    text = PubMedSearch(fetcher).run("mitochondria plants", _ctx(config, "21645374"))
    assert "21645374" not in text
    assert "PMID 30000001: Mitochondrial dynamics during plant cell death." in text
    assert "BACKGROUND: Mitochondria change shape" in text
    assert "PMID 30000002" in text
    search = seen[0].url.params
    assert search["db"] == "pubmed" and search["term"] == "mitochondria plants"
    assert search["retmode"] == "json" and search["api_key"] == "k3y"
    assert seen[0].url.host == "eutils.ncbi.nlm.nih.gov"


def test_pubmed_online_failure_falls_back_to_the_offline_index(small_file: Path) -> None:
    fetcher, seen = _fetcher(lambda r: httpx.Response(503))
    config = _config(online=True, data_file=small_file)
    text = PubMedSearch(fetcher).run("statin stroke", _ctx(config, "1003"))
    assert text.startswith("(NCBI unavailable: HTTPStatusError; offline index used)")
    assert "PMID 1001" in text
    assert len(seen) == 3  # one try and two retries


def test_http_fetcher_retries_faults_not_client_errors_and_caches() -> None:
    replies = iter([httpx.Response(429), httpx.Response(500), httpx.Response(200, json={"ok": 1})])
    fetcher, seen = _fetcher(lambda r: next(replies))
    assert fetcher.get_json("https://x.test/a", {"q": "1"}) == {"ok": 1}
    assert fetcher.get_json("https://x.test/a", {"q": "1"}) == {"ok": 1}  # cached
    assert len(seen) == 3

    fetcher, seen = _fetcher(lambda r: httpx.Response(404))
    with pytest.raises(httpx.HTTPStatusError):
        fetcher.get_text("https://x.test/missing", {})
    assert len(seen) == 1

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fetcher, seen = _fetcher(refuse)
    with pytest.raises(httpx.ConnectError):
        fetcher.get_text("https://x.test/down", {})
    assert len(seen) == 3


def test_http_cache_is_bounded() -> None:
    fetcher, seen = _fetcher(lambda r: httpx.Response(200, text=r.url.params["q"]))
    fetcher.cache_size = 2
    for q in ("a", "b", "c", "a"):
        fetcher.get_text("https://x.test/", {"q": q})
    assert len(seen) == 4  # "a" was evicted by "c"


def test_clinical_trials_offline_says_it_is_unavailable() -> None:
    assert ClinicalTrialsSearch().run("statins", _ctx(_config())) == OFFLINE


CT_STUDIES = {
    "studies": [
        {
            "protocolSection": {
                "identificationModule": {
                    "nctId": "NCT01234567",
                    "briefTitle": "Statins for Stroke Prevention in Older Adults",
                },
                "statusModule": {"overallStatus": "COMPLETED"},
                "conditionsModule": {"conditions": ["Stroke", "Hypercholesterolemia"]},
                "designModule": {"phases": ["PHASE3"]},
                "armsInterventionsModule": {
                    "interventions": [{"type": "DRUG", "name": "Atorvastatin"}]
                },
                "descriptionModule": {
                    "briefSummary": "This trial tests whether atorvastatin prevents stroke."
                },
            }
        }
    ],
    "nextPageToken": "abc",
}


def test_clinical_trials_online_from_recorded_response() -> None:
    fetcher, seen = _fetcher(lambda r: httpx.Response(200, json=CT_STUDIES))
    text = ClinicalTrialsSearch(fetcher).run("statin stroke", _ctx(_config(online=True)))
    assert "NCT01234567: Statins for Stroke Prevention in Older Adults" in text
    assert "[COMPLETED, PHASE3]" in text and "interventions: Atorvastatin" in text
    params = seen[0].url.params
    assert seen[0].url.path == "/api/v2/studies"
    assert params["query.term"] == "statin stroke" and params["pageSize"] == "3"
    fetcher, _ = _fetcher(lambda r: httpx.Response(200, json={"studies": []}))
    assert "no trials match" in ClinicalTrialsSearch(fetcher).run("x", _ctx(_config(online=True)))
    fetcher, _ = _fetcher(lambda r: httpx.Response(502))
    assert "unavailable" in ClinicalTrialsSearch(fetcher).run("x", _ctx(_config(online=True)))


def test_protein_lookup_bundled_table() -> None:
    config = _config()
    tool = ProteinLookup()
    assert tool.run("TP53", _ctx(config)).splitlines()[1].startswith("P04637 (TP53)")
    text = tool.run("Is insulin resistance worse in diabetes?", _ctx(config))
    assert "P06213 (INSR)" in text
    assert "no entry matches" in tool.run("lace plant leaf", _ctx(config))


UNIPROT = {
    "results": [
        {
            "entryType": "UniProtKB reviewed (Swiss-Prot)",
            "primaryAccession": "P04637",
            "proteinDescription": {
                "recommendedName": {"fullName": {"value": "Cellular tumor antigen p53"}}
            },
            "genes": [{"geneName": {"value": "TP53"}, "synonyms": [{"value": "P53"}]}],
            "comments": [
                {
                    "commentType": "FUNCTION",
                    "texts": [
                        {
                            "value": "Multifunctional transcription factor that induces "
                            "cell cycle arrest, DNA repair or apoptosis."
                        }
                    ],
                }
            ],
        }
    ]
}


def test_protein_lookup_online_from_recorded_response() -> None:
    fetcher, seen = _fetcher(lambda r: httpx.Response(200, json=UNIPROT))
    text = ProteinLookup(fetcher).run("p53 apoptosis", _ctx(_config(online=True)))
    assert "P04637 (TP53) Cellular tumor antigen p53: Multifunctional" in text
    query = seen[0].url.params["query"]
    assert query == "(p53 OR apoptosis) AND (organism_id:9606) AND (reviewed:true)"
    fetcher, _ = _fetcher(lambda r: httpx.Response(200, json={"results": []}))
    assert "bundled table" in ProteinLookup(fetcher).run("TP53", _ctx(_config(online=True)))


QUICKGO = {
    "numberOfHits": 2,
    "results": [
        {"id": "GO:0000001", "isObsolete": True, "name": "obsolete thing", "aspect": "x"},
        {
            "id": "GO:0007005",
            "isObsolete": False,
            "name": "mitochondrion organization",
            "definition": {"text": "A process that is carried out at the cellular level."},
            "aspect": "biological_process",
        },
    ],
    "pageInfo": {"resultsPerPage": 5, "current": 1, "total": 1},
}


def test_gene_ontology_lookup_offline_and_online() -> None:
    config = _config(extra={"tools.top_k": 5})
    text = GeneOntologyLookup().run(
        "Do mitochondria play a role in programmed cell death?", _ctx(config)
    )
    lines = text.splitlines()
    assert lines[1].startswith("GO:0012501 programmed cell death")
    assert any(line.startswith("GO:0005739 mitochondrion ") for line in lines)
    fetcher, seen = _fetcher(lambda r: httpx.Response(200, json=QUICKGO))
    online = GeneOntologyLookup(fetcher).run("mitochondria fission", _ctx(_config(online=True)))
    assert "GO:0007005 mitochondrion organization (biological process)" in online
    assert "obsolete" not in online
    assert seen[0].url.params["query"] == "mitochondria fission"
    fetcher, _ = _fetcher(lambda r: httpx.Response(500))
    fallback = GeneOntologyLookup(fetcher).run("apoptosis", _ctx(_config(online=True)))
    assert fallback.startswith("(QuickGO unavailable") and "GO:0006915" in fallback
