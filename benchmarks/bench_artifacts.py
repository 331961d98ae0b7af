"""Artifact store and ingestion throughput: local directory vs S3 (moto on loopback)."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from chimera_core.artifacts import ArtifactStore, LocalArtifactStore
from chimera_core.config.models import ArtifactsConfig, DataConfig

SIZE_MB = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _round_trip(store: ArtifactStore, src: Path, dest: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    store.put_file("bench/blob.bin", src)
    t1 = time.perf_counter()
    store.get_file("bench/blob.bin", dest)
    t2 = time.perf_counter()
    return SIZE_MB / (t1 - t0), SIZE_MB / (t2 - t1)


def run() -> dict[str, Any]:
    """MB/s put/get per backend, and PubMedQA records/s through validation and splitting."""
    from moto.server import ThreadedMotoServer

    from chimera_core.artifacts.s3 import S3ArtifactStore
    from chimera_core.data.pubmedqa import load_tasks
    from chimera_core.data.splits import seed_split

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "blob.bin"
        src.write_bytes(os.urandom(SIZE_MB * 1024 * 1024))
        put, get = _round_trip(LocalArtifactStore(Path(tmp) / "store"), src, Path(tmp) / "o1")
        out["local_put"] = {"value": put, "unit": "MB/s"}
        out["local_get"] = {"value": get, "unit": "MB/s"}
        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        try:
            cfg = ArtifactsConfig(backend="s3", endpoint=f"127.0.0.1:{port}", bucket="bench")
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
            s3 = S3ArtifactStore.from_config(cfg)
            s3.ensure_bucket()
            put, get = _round_trip(s3, src, Path(tmp) / "o2")
            out["s3_put"] = {"value": put, "unit": "MB/s"}
            out["s3_get"] = {"value": get, "unit": "MB/s"}
        finally:
            server.stop()
    data_file = os.environ.get("CHIMERA_PUBMEDQA_FILE")
    if data_file and Path(data_file).is_file():
        t0 = time.perf_counter()
        tasks = seed_split(load_tasks(DataConfig(source="file", file=Path(data_file))), 0.8)
        out["ingest_records"] = {"value": len(tasks) / (time.perf_counter() - t0), "unit": "rec/s"}
    return out
