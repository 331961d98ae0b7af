"""Nightly self-improvement of the lab: ingest, gather, sft, ppo, bandit, evaluate, promote.

Each task runs `chimera stage NAME --run-id <airflow run id>`: a local subprocess (laptop) or a
GPU pod (Kubernetes), per the profile's `orchestration` section. Stages are idempotent for a run
id, so a retried task resumes from its artifacts. Trigger from the UI with custom params.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param
from chimera_airflow import stage_task

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
        "stages": Param(
            STAGES,
            type="array",
            items={"type": "string", "enum": STAGES},
            description="Stages to run; the others are skipped.",
        ),
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
    previous = None
    for stage in STAGES:
        task = stage_task(stage, CONFIG)
        if previous is not None:
            previous >> task
        previous = task


if __name__ == "__main__":
    dag.test()
