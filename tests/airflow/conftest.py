"""Airflow tests run in the Airflow environment (.venv-airflow); elsewhere they are skipped."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

try:
    version("apache-airflow-core")
    HAS_AIRFLOW = True
except PackageNotFoundError:
    HAS_AIRFLOW = False

if not HAS_AIRFLOW:
    collect_ignore_glob = ["test_*.py"]
else:
    # Before airflow is imported: a private home, this repo's DAGs and plugins, no examples.
    home = Path(os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".chimera" / "airflow-test")))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
    # The DAG files load a profile whose data is a file: the repo's 40-record fixture unless set.
    os.environ.setdefault(
        "CHIMERA_PUBMEDQA_FILE", str(REPO / "tests" / "fixtures" / "pubmedqa" / "ori_pqal.json")
    )
    sys.path.insert(0, str(REPO / "plugins"))


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """A fresh metadata database for the tests that run DAGs (dag.test())."""
    from airflow.utils import db

    db.resetdb()
    yield
