"""Run every ``benchmarks/bench_*.py`` (or the ones named) and write JSON plus a markdown table.

Each module has ``run() -> dict[str, Result]`` where a result is a dict: ``value`` (a number, or
None when there is nothing to measure), ``unit``, and optionally ``goal`` (text such as
``"<= 1.10"``), ``met`` (bool) and ``notes`` (how it was measured, what was left out).
Targets live here, never in timed tests.

Results are merged into ``results/latest.json``: benchmarks not run this time keep their last
numbers (with the time they were taken), so ``make bench BENCH="adapter trainer"`` refreshes
two rows of the table without wiping the rest.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# Before any benchmark imports LiteLLM (through Agent Lightning): no cost-map download.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _modules(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    names = [n for arg in names for n in arg.replace(",", " ").split()]
    if not names:
        return found
    unknown = [n for n in names if f"bench_{n}" not in found and n not in found]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(found)})")
    return [n if n.startswith("bench_") else f"bench_{n}" for n in names]


def _value(r: dict[str, Any]) -> str:
    value = r.get("value")
    if value is None:
        return "n/a"
    return f"{value:.4g} {r.get('unit', '')}".strip()


def markdown(results: dict[str, dict[str, Any]], when: dict[str, str] | None = None) -> str:
    """The results as a markdown table, then each result's notes as numbered footnotes."""
    lines = ["| benchmark | metric | value | goal | met |", "|---|---|---|---|---|"]
    notes: list[str] = []
    for bench, metrics in results.items():
        for name, r in metrics.items():
            met = "" if r.get("met") is None else ("yes" if r["met"] else "NO")
            mark = ""
            if r.get("notes"):
                notes.append(str(r["notes"]))
                mark = f" [{len(notes)}]"
            lines.append(
                f"| {bench} | {name}{mark} | {_value(r)} | {r.get('goal') or ''} | {met} |"
            )
    out = "\n".join(lines) + "\n"
    if notes:
        out += "\n" + "\n".join(f"{i}. {n}" for i, n in enumerate(notes, start=1)) + "\n"
    if when:
        out += "\nMeasured: " + ", ".join(f"{b} {w}" for b, w in when.items()) + "\n"
    return out


def _previous(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def _write(
    out: Path, results: dict[str, Any], measured: dict[str, str], durations: dict[str, float]
) -> str:
    """Write ``latest.json`` and ``latest.md``; return the table."""
    out.mkdir(parents=True, exist_ok=True)
    ordered = {k: results[k] for k in sorted(results)}
    payload = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg(),
        },
        "measured": {k: measured[k] for k in ordered if k in measured},
        "seconds": {k: durations[k] for k in ordered if k in durations},
        "results": ordered,
    }
    (out / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    table = markdown(ordered, payload["measured"])
    (out / "latest.md").write_text(table)
    return table


def main() -> int:
    """Run the benchmarks and merge into ``results/latest.json`` and ``results/latest.md``.

    Results are written after each benchmark, so a failing one loses only its own numbers.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run, e.g. adapter trainer (all)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--fresh", action="store_true", help="drop results of benchmarks not run")
    args = parser.parse_args()
    previous = {} if args.fresh else _previous(args.out / "latest.json")
    results: dict[str, dict[str, Any]] = dict(previous.get("results", {}))
    measured: dict[str, str] = dict(previous.get("measured", {}))
    durations: dict[str, float] = dict(previous.get("seconds", {}))
    failed: list[str] = []
    table = ""
    for module_name in _modules(args.names):
        print(f"== {module_name}", flush=True)
        start = time.perf_counter()
        name = module_name.removeprefix("bench_")
        try:
            results[name] = importlib.import_module(f"benchmarks.{module_name}").run()
        except Exception:
            traceback.print_exc()
            print(f"   {module_name} FAILED; its previous numbers are kept", flush=True)
            failed.append(module_name)
            continue
        durations[name] = round(time.perf_counter() - start, 1)
        measured[name] = datetime.now(UTC).isoformat(timespec="seconds")
        print(f"   done in {durations[name]:.1f}s", flush=True)
        table = _write(args.out, results, measured, durations)
    print(table)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
