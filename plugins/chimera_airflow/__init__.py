"""Airflow side of Chimera: one way to declare a stage task, local or as a GPU pod.

Airflow puts ``plugins/`` on the import path; DAGs import ``chimera_airflow``. Only the
lightweight ``chimera_core.config`` is imported here: heavy stage code runs in the task's
subprocess or pod, never in the scheduler or DAG processor.
"""

from chimera_airflow.stage_task import SKIP_EXIT_CODE, ChimeraStageOperator, stage_task

__all__ = ["SKIP_EXIT_CODE", "ChimeraStageOperator", "stage_task"]
