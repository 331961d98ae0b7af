"""Nightly self-improvement of the lab: ingest, gather, sft, ppo, bandit, board, evaluate, promote.

Each task runs `chimera stage NAME --run-id <airflow run id>`: a local subprocess (laptop) or a
GPU pod (Kubernetes), per the profile's `orchestration` section. Stages are idempotent for a run
id, so a retried task resumes from its artifacts. Trigger from the UI with custom params.

The tasks are the profile's `orchestration.stages`: by default every stage of the pipeline
(`chimera_core.config.models.PIPELINE_STAGES`), in the order above. `board` trains the
principal investigator's model on the decision reward; it succeeds without training (its result
says why) when no board role has `trainable: true`.

`select_stages` runs first and marks the stages left out of the `stages` param as skipped, so
they never start. A user error (bad params or profile, exit 2) fails its task at once; a fault
(exit 1: a server died, ...) is retried.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param
from chimera_airflow import stage_pipeline, stages_param

from chimera_core.config import load_config

PROFILE = os.environ.get("CHIMERA_PROFILE", "local")
CONFIG = load_config(PROFILE)
STAGES = CONFIG.orchestration.stages

with DAG(
    dag_id="chimera_training",
    description="Gather rollouts, train each tier, evaluate, promote.",
    schedule=CONFIG.orchestration.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["chimera", "training"],
    doc_md=__doc__,
    params={
        "profile": Param(PROFILE, type="string", description="Chimera profile (configs/*.yaml)."),
        "stages": stages_param(STAGES),
        "gather_tasks": Param(
            None, type=["null", "integer"], minimum=1, description="Tasks to gather."
        ),
        "eval_tasks": Param(
            None, type=["null", "integer"], minimum=1, description="Held-out tasks."
        ),
        "sft_steps": Param(None, type=["null", "integer"], minimum=1, description="SFT steps."),
        "ppo_steps": Param(None, type=["null", "integer"], minimum=1, description="RL steps."),
    },
) as dag:
    stage_pipeline(STAGES, CONFIG)


if __name__ == "__main__":
    dag.test()
