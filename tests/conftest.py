"""Test-wide setup: never reach the network, never write outside tmp dirs."""

from __future__ import annotations

import os

# Set before any library import reads them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CHIMERA_SHARED_DIR", REPO.parent / "shared"))
PUBMEDQA_DIR = SHARED / "data" / "pubmedqa"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests where CUDA is missing (CI), with the reason in the summary."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run with -m gpu on a GPU machine)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def pubmedqa_file() -> Path:
    """The real PQA-L file shipped in ../shared."""
    path = PUBMEDQA_DIR / "ori_pqal.json"
    assert path.is_file(), f"PubMedQA data missing at {path} (set CHIMERA_SHARED_DIR)"
    return path


@pytest.fixture(scope="session")
def test_ids_file() -> Path:
    """The official PQA-L test PMIDs."""
    return PUBMEDQA_DIR / "test_ground_truth.json"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server in this process on 127.0.0.1; yields its ``host:port``."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
