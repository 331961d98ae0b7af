"""Which stages a run runs: the ``stages`` param (a multi-select) and the task that applies it.

The trigger form renders an ``array`` param with ``examples`` as a multi-select of those values
(Airflow 3's FlexibleForm: ``type: array`` plus ``examples`` or ``enum``); ``items.enum`` makes
the API reject any other name at trigger time, and ``values_display`` labels the choices.

``select_stages``, the first task of a DAG, marks every stage task the run leaves out as
skipped before any of them starts: no task process, no ``chimera`` subprocess, no pod. Stage
tasks run with ``trigger_rule="none_failed"``, so a selected stage after a skipped one runs, and
each stage depends on every earlier stage, so it still waits for the selected ones before it.
``done``, the last task, fails the run (upstream_failed) when any stage failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Param, SkipMixin

if TYPE_CHECKING:
    from chimera_core.config import ChimeraConfig

SELECT_TASK_ID = "select_stages"
DONE_TASK_ID = "done"
# The multi-select's chips, one per stage of PIPELINE_STAGES (chimera_core.config.models): keep
# them short, so that all of them wrap onto few lines. A stage without a label shows its name.
STAGE_LABELS = {
    "ingest": "ingest (dataset)",
    "gather": "gather (rollouts)",
    "sft": "sft (fine-tune juniors)",
    "ppo": "ppo (RL of seniors)",
    "bandit": "bandit (supervisor policy)",
    "board": "board (PI decision)",
    "evaluate": "evaluate (vs champion)",
    "promote": "promote (new champion)",
}


def stages_param(
    stages: Sequence[str],
    default: Sequence[str] | None = None,
    description: str = "Stages to run; the others are skipped without starting.",
) -> Param:
    """The ``stages`` param: a multi-select of ``stages``, at least one, each at most once."""
    choices = list(stages)
    return Param(
        list(choices if default is None else default),
        type="array",
        items={"type": "string", "enum": choices},
        examples=choices,  # what makes the trigger form a multi-select
        values_display={s: STAGE_LABELS.get(s, s) for s in choices},
        uniqueItems=True,
        minItems=1,
        title="Stages",
        description=description,
    )


def selected_stages(params: Mapping[str, Any]) -> list[str] | None:
    """The run's ``stages`` param as a list; None when the DAG has no such param (run all)."""
    value = params.get("stages")
    if value is None:
        return None
    if isinstance(value, str):  # tolerated from hand-written conf: "ingest,gather"
        return [s.strip() for s in value.split(",") if s.strip()]
    return [str(s) for s in value]


class SelectStagesOperator(BaseOperator, SkipMixin):
    """Marks the stage tasks left out of the run's ``stages`` as skipped, before any starts."""

    ui_color = "#f0f0f0"

    def __init__(self, *, stages: Sequence[str], **kwargs: Any) -> None:
        kwargs.setdefault("task_id", SELECT_TASK_ID)
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.stages = list(stages)

    def execute(self, context: Any) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        selected = selected_stages(context.get("params") or {})
        if selected is None:
            selected = list(self.stages)
        unknown = [s for s in selected if s not in self.stages]
        if unknown:
            raise AirflowFailException(
                f"unknown stages {', '.join(unknown)}; this DAG runs {', '.join(self.stages)}"
            )
        run = [s for s in self.stages if s in selected]
        left_out = [s for s in self.stages if s not in selected]
        self.log.info("stages to run: %s", ", ".join(run))
        if left_out:
            self.log.info("skipped without starting: %s", ", ".join(left_out))
            assert self.dag is not None
            self.skip(ti=context["ti"], tasks=[self.dag.get_task(s) for s in left_out])
        return run


def stage_pipeline(
    stages: Sequence[str], config: ChimeraConfig, **kwargs: Any
) -> tuple[BaseOperator, list[BaseOperator]]:
    """``select_stages``, the stages in order, ``done``: the tasks of a DAG that runs ``stages``."""
    from airflow.providers.standard.operators.empty import EmptyOperator

    from chimera_airflow.stage_task import stage_task

    select = SelectStagesOperator(stages=stages)
    tasks = [stage_task(stage, config, **kwargs) for stage in stages]
    select >> tasks[0]
    # Each stage waits for every earlier one, not only the one before it: a left-out stage is
    # skipped at once, and with a plain chain the stage after it would start right away, beside
    # an earlier selected stage that is still running.
    for i, task in enumerate(tasks):
        for earlier in tasks[:i]:
            earlier >> task
    # A run's state is that of its last tasks. The stages after a failed one may all have been
    # skipped already (left out), which would make the run a success: `done` waits for every
    # stage and is upstream_failed, so the run failed, when any of them failed.
    done = EmptyOperator(task_id=DONE_TASK_ID, trigger_rule="none_failed")
    tasks >> done
    return select, tasks
