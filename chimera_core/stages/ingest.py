"""Stage ``ingest``: PubMedQA -> validated, split, versioned task dataset."""

from __future__ import annotations

from pathlib import Path

from chimera_core.data.dataset import publish_task_dataset
from chimera_core.data.pubmedqa import load_tasks, read_id_file, source_description
from chimera_core.data.splits import official_split, seed_split, stratified_split
from chimera_core.data.tasks import ResearchTask
from chimera_core.stages.base import StageContext, StageResult

# PQA-L's official test half (the PubMedQA repository's test_ground_truth.json, MIT licence):
# 500 PMIDs, so the official split needs no download and its numbers compare with published ones.
OFFICIAL_TEST_IDS = Path(__file__).resolve().parent.parent / "data" / "pqal_official_test_ids.txt"


def apply_split(tasks: list[ResearchTask], ctx: StageContext) -> list[ResearchTask]:
    """Apply the configured split method."""
    data = ctx.config.data
    source = source_description(data)
    if data.split == "seed":
        return seed_split(tasks, data.train_fraction, source)
    if data.split == "stratified":
        return stratified_split(tasks, data.train_fraction, data.seed, source)
    ids_file = data.test_ids_file or OFFICIAL_TEST_IDS
    return official_split(tasks, read_id_file(ids_file), str(ids_file))


def run(ctx: StageContext) -> StageResult:
    """Load, validate, split and publish the task dataset; make it the current version."""
    tasks = load_tasks(ctx.config.data)
    split = apply_split(tasks, ctx)
    manifest = publish_task_dataset(
        ctx.store, split, source_description(ctx.config.data), ctx.config.data.split
    )
    ctx.pin_dataset(manifest.version)  # this run's later stages use it, whatever is current
    ctx.log.info("published %s (%d tasks)", manifest.uri, manifest.n_tasks)
    return StageResult(
        stage=ctx.stage,
        run_id=ctx.run_id,
        outputs={"tasks": manifest.uri, "dataset_version": manifest.version},
        metrics=manifest.model_dump(include={"n_tasks", "counts", "label_totals", "sha256"}),
    )
