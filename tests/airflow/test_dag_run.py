"""``dag.test()`` runs the training DAG with artifacts in a live local S3 server (moto).

The tiny profile leaves the PI untrained (no board role is ``trainable``), so the ``board`` task
runs the real ``chimera stage board`` and succeeds without training: fast, and it still proves
the task is wired in and its result stored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chimera_core.config.models import PIPELINE_STAGES

REPO = Path(__file__).resolve().parents[2]
BUCKET = "chimera-dag-test"
TINY = """
profile: tiny
data: {source: file, split: seed}
models:
  junior: {served_model: chimera-junior, sampling: {temperature: 0.7, max_tokens: 24}}
  senior: {served_model: chimera-senior, sampling: {temperature: 0.1, max_tokens: 24}}
  board: {served_model: chimera-board, sampling: {temperature: 0.0, max_tokens: 24}}
  judge: {served_model: chimera-judge, sampling: {temperature: 0.0, max_tokens: 48}}
roles:
  Geneticist: {tier: junior, model: junior, tools: [pubmed_search]}
  Pharmacologist: {tier: junior, model: junior}
  Neurologist: {tier: junior, model: junior}
  Supervisor: {tier: supervisor, model: junior}
  HypothesisRefiner: {tier: senior, model: senior, trainable: true}
  ProtocolDesigner: {tier: senior, model: senior, trainable: true}
  PeerReviewer: {tier: board, model: board}
  SafetyOfficer: {tier: board, model: board}
  PrincipalInvestigator: {tier: board, model: board}
stages:
  gather: {n_tasks: 1, n_runners: 1, max_turns: 4}
  sft:
    algorithm: sft
    options:
      sft: {top_quantile: 1.0, reward_threshold: 0.0, max_steps: 1, batch_size: 1, grad_accum: 1,
            lora_r: 4, max_seq_length: 512}
  ppo:
    algorithm: grpo
    options:
      grpo: {total_steps: 1, rollout_n: 2, train_batch_size: 2, max_response_length: 8,
             max_prompt_length: 512, lora_r: 4}
  evaluate: {n_tasks: 1, bootstrap_samples: 100}
tracking: {wandb_mode: disabled}
"""


def _profile(tmp_path: Path, s3_server: str) -> Path:
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY)
    os.environ["CHIMERA_PROFILE"] = str(profile)
    os.environ["CHIMERA_ORCHESTRATION__CHIMERA_COMMAND"] = json.dumps(
        [str(REPO / ".venv/bin/chimera")]
    )
    os.environ["CHIMERA_SERVING__MODELS_DIR"] = str(REPO / ".chimera" / "test-models")
    os.environ["AIRFLOW_CONN_CHIMERA_MINIO"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "test-access",
            "password": "test-secret",
            "extra": {"endpoint_url": f"http://{s3_server}", "bucket": BUCKET},
        }
    )
    from minio import Minio

    client = Minio(s3_server, access_key="test-access", secret_key="test-secret", secure=False)
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    return profile


def _run(stages: list[str]) -> tuple[str, dict[str, str]]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["chimera_training"]
    dagrun = dag.test(run_conf={"stages": stages, "profile": os.environ["CHIMERA_PROFILE"]})
    states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
    return str(dagrun.state), states


def _keys(s3_server: str) -> list[str]:
    from minio import Minio

    client = Minio(s3_server, access_key="test-access", secret_key="test-secret", secure=False)
    return [o.object_name for o in client.list_objects(BUCKET, recursive=True)]


def _get(s3_server: str, key: str) -> bytes:
    from minio import Minio

    client = Minio(s3_server, access_key="test-access", secret_key="test-secret", secure=False)
    response = client.get_object(BUCKET, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def test_ingest_only_run_skips_the_rest(airflow_db: None, s3_server: str, tmp_path: Path) -> None:
    _profile(tmp_path, s3_server)
    state, tasks = _run(["ingest"])
    assert state == "success", tasks
    assert (tasks["select_stages"], tasks["ingest"], tasks["done"]) == ("success",) * 3
    assert set(tasks) == {"select_stages", *PIPELINE_STAGES, "done"}
    assert {tasks[s] for s in PIPELINE_STAGES[1:]} == {"skipped"}
    keys = _keys(s3_server)
    assert any(k.startswith("datasets/pubmedqa/seed-") and k.endswith("tasks.jsonl") for k in keys)
    assert any(k.startswith("runs/") and k.endswith("/ingest/result.json") for k in keys)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every stage on the real model, one task each: ~10-15 min on 2 cores
def test_full_training_dag_writes_every_stage_artifact(
    airflow_db: None, s3_server: str, tmp_path: Path
) -> None:
    _profile(tmp_path, s3_server)
    stages = list(PIPELINE_STAGES)
    state, tasks = _run(stages)
    assert state == "success", tasks
    assert {tasks[s] for s in stages} == {"success"}, tasks
    keys = _keys(s3_server)
    for stage in stages:
        assert any(k.endswith(f"/{stage}/result.json") for k in keys), stage
    # no board role is trainable here: the board stage ran and said why it trained nothing
    (board_key,) = [k for k in keys if k.endswith("/board/result.json")]
    board = json.loads(_get(s3_server, board_key))
    assert "no board role is trainable" in board["metrics"]["skipped"], board
    assert not any(k.startswith("models/board/") for k in keys)
    assert any(k.endswith("/evaluate/report/report.md") for k in keys)
    assert any(k.startswith("models/") for k in keys)
