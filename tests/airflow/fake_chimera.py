"""A stand-in for ``chimera stage NAME --run-id ID ... --xcom-file F``: the operator tests run it.

Behaviour from the environment (``NAME`` is the stage, upper case):
  FAKE_STAGE_LINES  lines to print before finishing (default 2)
  FAKE_STAGE_SLEEP  seconds to sleep after each line (default 0)
  FAKE_STAGE_EXIT / FAKE_STAGE_EXIT_<NAME>  exit code (default 0); 0 writes the result
  FAKE_STAGE_DIR    if set, each start appends "<stage>" to DIR/started (proves a process ran)
Only the standard library: it runs with whatever Python the test uses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    stage = argv[argv.index("stage") + 1]
    run_id = argv[argv.index("--run-id") + 1]
    xcom_file = Path(argv[argv.index("--xcom-file") + 1])
    if marker_dir := os.environ.get("FAKE_STAGE_DIR"):
        with (Path(marker_dir) / "started").open("a") as f:
            f.write(stage + "\n")
    sleep_s = float(os.environ.get("FAKE_STAGE_SLEEP", "0"))
    for i in range(int(os.environ.get("FAKE_STAGE_LINES", "2"))):
        print(f"{stage}: step {i + 1}", flush=True)
        if i == 0:
            sys.stderr.write(f"{stage}: progress 10%\r{stage}: progress 50%\r")
            sys.stderr.write(f"{stage}: progress 100%\n")
            sys.stderr.write(f"\x1b[32m{stage}: coloured\x1b[0m\n")
            sys.stderr.flush()
        time.sleep(sleep_s)
    code = int(
        os.environ.get(f"FAKE_STAGE_EXIT_{stage.upper()}", os.environ.get("FAKE_STAGE_EXIT", "0"))
    )
    if code == 2:
        print(f"error: unknown profile 'nope' (stage {stage})", file=sys.stderr)
    elif code:
        print(f"fault: the model server died (stage {stage})", file=sys.stderr)
    if code:
        return code
    result = {
        "stage": stage,
        "run_id": run_id,
        "outputs": {"data": f"file:///tmp/fake/{run_id}/{stage}"},
        "metrics": {"n_tasks": 3, "accuracy": 0.6667, "history": list(range(50))},
        "seconds": 1.5,
        "peak_rss_mb": 42.0,
        "finished_at": "2026-12-02T00:00:00+00:00",
        "resumed": False,
    }
    xcom_file.write_text(json.dumps(result))
    print(json.dumps(result))  # what --json prints
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
