"""Run every ``benchmarks/bench_*.py`` (or the ones named) and write JSON plus a markdown table.

Each module has ``run() -> dict[str, Result]`` where a result is a measured value with its goal.
Targets live here, never in timed tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _modules(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if not names:
        return found
    unknown = [n for n in names if f"bench_{n}" not in found and n not in found]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(found)})")
    return [n if n.startswith("bench_") else f"bench_{n}" for n in names]


def _markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| benchmark | metric | value | goal | met |", "|---|---|---|---|---|"]
    for bench, metrics in results.items():
        for name, r in metrics.items():
            met = "" if r.get("met") is None else ("yes" if r["met"] else "NO")
            lines.append(
                f"| {bench} | {name} | {r['value']:.4g} {r.get('unit', '')} | "
                f"{r.get('goal') or ''} | {met} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the benchmarks and write ``results/latest.json`` and ``results/latest.md``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for module_name in _modules(args.names):
        print(f"== {module_name}", flush=True)
        start = time.perf_counter()
        results[module_name.removeprefix("bench_")] = importlib.import_module(
            f"benchmarks.{module_name}"
        ).run()
        print(f"   done in {time.perf_counter() - start:.1f}s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "results": results,
    }
    (args.out / "latest.json").write_text(json.dumps(payload, indent=2))
    table = _markdown(results)
    (args.out / "latest.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
