"""Evaluate a chosen model set (champion or a registered version) on held-out tasks."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param
from chimera_airflow import stage_pipeline, stages_param

from chimera_core.config import load_config

PROFILE = os.environ.get("CHIMERA_PROFILE", "local")
CONFIG = load_config(PROFILE)
STAGES = ["ingest", "evaluate"]

with DAG(
    dag_id="chimera_evaluate",
    description="Evaluate a model set against the champion on held-out tasks.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["chimera", "evaluation"],
    doc_md=__doc__,
    params={
        "profile": Param(PROFILE, type="string", description="Chimera profile (configs/*.yaml)."),
        "stages": stages_param(STAGES),
        "model_set": Param(
            "champion", type="string", description="champion, base, or a version id."
        ),
        "eval_tasks": Param(
            None, type=["null", "integer"], minimum=1, description="Held-out tasks."
        ),
    },
) as dag:
    stage_pipeline(STAGES, CONFIG)


if __name__ == "__main__":
    dag.test()
