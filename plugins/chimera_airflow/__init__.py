"""Airflow side of Chimera: one way to declare a stage task, local or as a GPU pod.

Airflow puts ``plugins/`` on the import path; DAGs import ``chimera_airflow``. Only the
lightweight ``chimera_core.config`` and ``chimera_core.errors`` are imported here: heavy stage
code runs in the task's subprocess or pod, never in the scheduler or DAG processor.
"""

from chimera_airflow.selection import (
    DONE_TASK_ID,
    SELECT_TASK_ID,
    SelectStagesOperator,
    stage_pipeline,
    stages_param,
)
from chimera_airflow.stage_task import ChimeraStageOperator, stage_task

__all__ = [
    "DONE_TASK_ID",
    "SELECT_TASK_ID",
    "ChimeraStageOperator",
    "SelectStagesOperator",
    "stage_pipeline",
    "stage_task",
    "stages_param",
]
