"""PI replay: the decision tier alone, base vs a trained adapter on the same recorded prompts.

An ablation of the board stage. The PrincipalInvestigator's exact prompts are taken from an
evaluation run's traces (``runs/<run>/evaluate/<set>/spans``: the lab's context on each
held-out task, as that set's lab built it), and the PI model is asked for its decision twice
per task, once as the base model and once through a registered LoRA adapter (the board stage's
PI version); everything else (prompt, structured-output schema, token budget, temperature) is
held fixed, so any difference is the adapter's. Each arm's replies are parsed and mapped to
yes/no/maybe as the lab maps them (``PIDecision``, the PI role's state update); a reply that
does not parse counts as a wrong answer (``invalid``). Reported per arm: answer counts, exact
accuracy against the PubMedQA label, macro-F1, wall seconds (4 requests in flight, so it also
measures vLLM's LoRA overhead); the majority baseline of the same tasks; the paired deltas
with 95% bootstrap CIs (``evaluation.metrics``); and how many of the base arm's answers (and
reply texts) equal what the original rollout recorded, a check that the replay is faithful.

Knobs (environment): ``CHIMERA_BENCH_REPLAY_ROOT`` (artifact store root,
``.chimera/nightly/artifacts``), ``CHIMERA_BENCH_REPLAY_RUN`` (``nightly-1``),
``CHIMERA_BENCH_REPLAY_SET`` (the evaluated set whose prompts are replayed, ``base``),
``CHIMERA_BENCH_REPLAY_ADAPTER`` (registry ``alias:version``, ``pi:board-nightly-1``),
``CHIMERA_BENCH_REPLAY_PROFILE`` (serving settings, ``nightly``), ``CHIMERA_BENCH_REPLAY_LIMIT``
(the first N tasks), ``CHIMERA_BENCH_REPLAY_CONCURRENCY`` (requests in flight, 4). Per-task
answers of both arms go to ``results/pi_replay-<run>-<set>.json``.

Run: ``python -m benchmarks.run pi_replay`` (starts vLLM; about 100 PI calls per arm).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, result, skip_real

PI = "PrincipalInvestigator"
INVALID = "invalid"  # a reply that does not parse as a PI decision (scored wrong)
ERROR = "error"  # a request that failed (scored wrong, counted apart)
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ReplayTask:
    """One recorded rollout's PI call: the record, the prompt sent, the reply it got."""

    record: Any  # RolloutRecord
    prompt: list[dict[str, Any]]
    recorded_reply: str
    pi_calls: int


@dataclass(frozen=True)
class Reply:
    """What one arm's model answered to one prompt."""

    text: str
    completion_tokens: int = 0
    error: str | None = None


Ask = Callable[[list[dict[str, Any]]], "Reply | str"]


def load_replay_tasks(
    store: Any, prefix: str, *, role: str = PI, limit: int | None = None
) -> tuple[list[ReplayTask], dict[str, str]]:
    """The PI prompts of the rollouts under ``prefix`` (records and spans, in key order).

    Read with the loaders the training stages use (``rollouts.storage``) and the trace
    adapter's conversations of one role; the prompt is the first call's messages without its
    reply (a second call is the lab's repair request). Returns the tasks and, for the rollouts
    left out, task id -> why.
    """
    from chimera_core.rollouts.storage import load_records, read_spans
    from chimera_plugins.adapters.hierarchical import role_conversations

    tasks: list[ReplayTask] = []
    skipped: dict[str, str] = {}
    for record in load_records(store, prefix):
        if limit is not None and len(tasks) >= limit:
            break
        if record.status != "succeeded":
            skipped[record.task_id] = f"rollout {record.status}: {record.error or ''}".strip()
            continue
        spans = read_spans(store, prefix, record.task_id)
        if spans is None:
            skipped[record.task_id] = "no readable spans file"
            continue
        conversations = [c for c in role_conversations(spans, role) if c]
        if not conversations:
            skipped[record.task_id] = f"no {role} call in the spans"
            continue
        first = min(conversations, key=len)  # the repair request extends the first call's chat
        if first[-1].get("role") != "assistant":
            skipped[record.task_id] = f"the {role} call has no recorded reply"
            continue
        tasks.append(
            ReplayTask(
                record=record,
                prompt=[dict(m) for m in first[:-1]],
                recorded_reply=str(first[-1].get("content") or ""),
                pi_calls=len(conversations),
            )
        )
    return tasks, skipped


def decide(text: str, role: str = PI, tier: str = "board") -> tuple[str, str | None]:
    """(answer, GO/NO-GO) of a PI reply as the lab maps it; ``(INVALID, None)`` if unparsable.

    The lab's own path: ``parse_output`` into the role's schema with the check the lab applies
    (a copied demonstration answer is refused), then the role's state update, whose
    ``final_answer`` is what a rollout record stores.
    """
    from chimera_core.data.output_parsing import OutputError, parse_output
    from chimera_core.lab.prompts import copied_example
    from chimera_core.lab.roles import PI as PI_SPEC

    try:
        value = parse_output(text, PI_SPEC.schema, lambda v: copied_example(v, role, tier))
    except OutputError:
        return INVALID, None
    state = PI_SPEC.apply(value, {}, role)
    return str(state["final_answer"]), state.get("final_decision")


def _ask_all(tasks: Sequence[ReplayTask], ask: Ask, concurrency: int) -> tuple[list[Reply], float]:
    """Every task's prompt through ``ask``, ``concurrency`` in flight; replies in task order."""

    def one(task: ReplayTask) -> Reply:
        try:
            reply = ask([dict(m) for m in task.prompt])
        except Exception as exc:  # one failed request is one wrong answer, not a lost arm
            return Reply("", error=f"{type(exc).__name__}: {exc}")
        return reply if isinstance(reply, Reply) else Reply(str(reply))

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        replies = list(pool.map(one, tasks))
    return replies, time.perf_counter() - start


def replay_decisions(
    tasks: Sequence[ReplayTask],
    asks: Mapping[str, Ask],
    *,
    concurrency: int = 4,
    samples: int = 2000,
    role: str = PI,
    tier: str = "board",
) -> dict[str, Any]:
    """Ask every arm (``label -> ask``, the first the baseline) for each task's decision; score.

    Arms run one after another, each with ``concurrency`` requests in flight. The first arm is
    also checked against the recorded rollouts (answers and reply texts that match). Metrics
    are ``evaluation.metrics``' on copies of the records carrying each arm's answer, so they
    match what evaluate reports: exact accuracy, macro-F1, the majority label of these tasks,
    and paired bootstraps (exact accuracy, macro-F1) of every other arm over the first.
    """
    from chimera_core.evaluation.metrics import compute_metrics, paired_bootstrap

    if not asks:
        raise ValueError("no arms to replay")
    labels = list(asks)
    per_arm: dict[str, dict[str, Any]] = {}
    records: dict[str, list[Any]] = {}
    for label in labels:
        replies, seconds = _ask_all(tasks, asks[label], concurrency)
        if replies and all(r.error for r in replies):  # the server, not the model: no numbers
            raise RuntimeError(f"every request of arm {label!r} failed: {replies[0].error}")
        decided = [(ERROR, None) if r.error else decide(r.text, role, tier) for r in replies]
        records[label] = [
            t.record.model_copy(
                update={"status": "succeeded", "final_answer": a, "final_decision": d}
            )
            for t, (a, d) in zip(tasks, decided, strict=True)
        ]
        answers = Counter(a for a, _ in decided)
        metrics = compute_metrics(records[label])
        per_arm[label] = {
            "answers": {k: answers.get(k, 0) for k in ("yes", "no", "maybe", INVALID, ERROR)},
            "exact_accuracy": metrics.exact_accuracy,
            "macro_f1": metrics.macro_f1,
            "seconds": round(seconds, 3),
            "completion_tokens": sum(r.completion_tokens for r in replies),
            "replies": replies,
            "decided": decided,
        }
    base = labels[0]
    majority = compute_metrics(records[base])
    faithful = per_arm[base]
    report: dict[str, Any] = {
        "n_tasks": len(tasks),
        "baseline_arm": base,
        "majority": {
            "label": majority.majority_label,
            "exact_accuracy": majority.majority_accuracy,
            "macro_f1": majority.majority_macro_f1,
        },
        "faithful": {
            "answer_equal": sum(
                a == t.record.final_answer
                for t, (a, _) in zip(tasks, faithful["decided"], strict=True)
            ),
            "reply_equal": sum(
                r.text == t.recorded_reply for t, r in zip(tasks, faithful["replies"], strict=True)
            ),
            "of": len(tasks),
            "repaired": sum(t.pi_calls > 1 for t in tasks),
        },
        "arms": {
            label: {k: v for k, v in arm.items() if k not in ("replies", "decided")}
            for label, arm in per_arm.items()
        },
        "paired": {
            label: {
                m: paired_bootstrap(records[base], records[label], m, samples=samples).model_dump()
                for m in ("exact_accuracy", "macro_f1")
            }
            for label in labels[1:]
        },
        "tasks": [
            {
                "task_id": t.record.task_id,
                "label": t.record.expected_decision,
                "recorded_answer": t.record.final_answer,
                "recorded_reply": t.recorded_reply,
                "pi_calls": t.pi_calls,
                **{label: _task_entry(per_arm[label], i) for label in labels},
            }
            for i, t in enumerate(tasks)
        ],
    }
    return report


def _task_entry(arm: Mapping[str, Any], i: int) -> dict[str, Any]:
    """One arm's answer to task ``i``: the mapped answer, the decision, the raw reply."""
    reply: Reply = arm["replies"][i]
    answer, decision = arm["decided"][i]
    entry = {"answer": answer, "decision": decision, "reply": reply.text}
    return {**entry, "error": reply.error} if reply.error else entry


def openai_ask(endpoint: Any, body: Mapping[str, Any], timeout_s: float, retries: int) -> Ask:
    """An ``Ask`` on an OpenAI-compatible endpoint (``lab.models.Endpoint``) with a fixed body."""
    from openai import OpenAI

    from chimera_core.lab.models import shared_http_clients

    client = OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        timeout=timeout_s,
        max_retries=retries,
        http_client=shared_http_clients()[0],
    )

    def ask(messages: list[dict[str, Any]]) -> Reply:
        reply = client.chat.completions.create(
            model=endpoint.model,
            messages=messages,  # type: ignore[arg-type]
            **body,
        )
        usage = reply.usage
        return Reply(
            reply.choices[0].message.content or "",
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    return ask


def _knobs() -> dict[str, Any]:
    root = Path(os.environ.get("CHIMERA_BENCH_REPLAY_ROOT", ".chimera/nightly/artifacts"))
    limit = os.environ.get("CHIMERA_BENCH_REPLAY_LIMIT", "")
    adapter = os.environ.get("CHIMERA_BENCH_REPLAY_ADAPTER", "pi:board-nightly-1")
    alias, sep, version = adapter.partition(":")
    if not sep or not alias or not version:
        raise ValueError(f"CHIMERA_BENCH_REPLAY_ADAPTER={adapter!r}: expected alias:version")
    return {
        "root": root if root.is_absolute() else REPO / root,
        "run": os.environ.get("CHIMERA_BENCH_REPLAY_RUN", "nightly-1"),
        "set": os.environ.get("CHIMERA_BENCH_REPLAY_SET", "base"),
        "alias": alias,
        "version": version,
        "profile": os.environ.get("CHIMERA_BENCH_REPLAY_PROFILE", "nightly"),
        "limit": int(limit) if limit else None,
        "concurrency": int(os.environ.get("CHIMERA_BENCH_REPLAY_CONCURRENCY", "4")),
    }


def measure(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Load the recorded PI prompts, serve base and adapter on one vLLM server, replay both."""
    import tempfile

    from chimera_core.artifacts import LocalArtifactStore
    from chimera_core.config import load_config
    from chimera_core.lab.agents import structured_answer_request
    from chimera_core.lab.graph import role_spec
    from chimera_core.model_registry import BASE, ModelRegistry
    from chimera_core.serving.model_sets import ModelServing

    root: Path = knobs["root"]
    config = load_config(
        knobs["profile"],
        overrides={"artifacts.backend": "local", "artifacts.local_root": str(root)},
    )
    role_cfg = config.roles[PI]
    alias, version = knobs["alias"], knobs["version"]
    if role_cfg.model != alias:
        raise ValueError(f"the {PI} uses model alias {role_cfg.model!r}, not {alias!r}")
    model_cfg = config.models[alias]
    store = LocalArtifactStore(root)
    prefix = f"runs/{knobs['run']}/evaluate/{knobs['set']}"
    tasks, skipped = load_replay_tasks(store, prefix, limit=knobs["limit"])
    if not tasks:
        raise RuntimeError(f"no replayable {PI} calls under {store.uri(prefix)}: {skipped}")
    cache = tempfile.TemporaryDirectory(prefix="chimera-bench-replay-")  # fetched adapter
    registry = ModelRegistry(store, Path(cache.name))
    trained = registry.lineage_tasks(alias, version)
    if overlap := sorted({t.record.task_id for t in tasks} & set(trained)):
        raise RuntimeError(
            f"{alias}:{version} was trained on {len(overlap)} of the replayed tasks "
            f"(e.g. {', '.join(overlap[:5])}): replay held-out tasks only"
        )
    recorded = Counter(t.record.model_set.get(alias, "?") for t in tasks)
    temperature = (
        role_cfg.temperature if role_cfg.temperature is not None else model_cfg.sampling.temperature
    )
    body = {
        "temperature": temperature,
        "top_p": model_cfg.sampling.top_p,
        **structured_answer_request(role_spec(PI, config).schema),
    }
    serving = ModelServing(config, registry, run_id="bench-pi-replay")
    try:
        arms = {"base": BASE, "adapter": version}
        endpoints = {label: serving.endpoints({alias: v})[alias] for label, v in arms.items()}
        asks: dict[str, Ask] = {}
        warm = [{"role": "user", "content": "Answer yes or no: is water wet?"}]
        for label, endpoint in endpoints.items():
            openai_ask(endpoint, {**body, "max_tokens": 4}, model_cfg.timeout_s, 0)(warm)
            asks[label] = openai_ask(endpoint, body, model_cfg.timeout_s, model_cfg.max_retries)
        report = replay_decisions(
            tasks,
            asks,
            concurrency=knobs["concurrency"],
            samples=config.stages.evaluate.bootstrap_samples,
            tier=role_cfg.tier,
        )
    finally:
        serving.close()
        cache.cleanup()
    report["setup"] = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in knobs.items()},
        "prefix": store.uri(prefix),
        "models": {label: e.model for label, e in endpoints.items()},
        "recorded_versions": dict(recorded),
        "skipped": skipped,
        "request": {k: v for k, v in body.items() if k != "response_format"},
    }
    return report


def rows(report: Mapping[str, Any]) -> dict[str, Any]:
    """The results-table rows of a replay report."""
    n = report["n_tasks"]
    arms = report["arms"]
    major = report["majority"]
    faithful = report["faithful"]
    out: dict[str, Any] = {"tasks": result(n, "tasks", notes=_setup_note(report))}
    for label, arm in arms.items():
        counts = ", ".join(f"{k} {v}" for k, v in arm["answers"].items())
        out[f"{label}_exact_accuracy"] = result(
            arm["exact_accuracy"], "", notes=f"{label}: {counts}"
        )
        out[f"{label}_macro_f1"] = result(arm["macro_f1"], "")
    out["majority_exact_accuracy"] = result(
        major["exact_accuracy"], "", notes=f"majority label of these tasks: {major['label']}"
    )
    out["majority_macro_f1"] = result(major["macro_f1"], "")
    for label, paired in report["paired"].items():
        for metric, c in paired.items():
            name = f"{label}_{metric}_delta"
            out[name] = result(
                c["delta"],
                "",
                notes=(
                    f"{label} minus {report['baseline_arm']}, {metric}: {c['baseline']:.3f} -> "
                    f"{c['challenger']:.3f}, paired 95% CI [{c['ci_low']:+.3f}, "
                    f"{c['ci_high']:+.3f}] over {c['n_pairs']} tasks"
                ),
            )
            out[f"{name}_ci_low"] = result(c["ci_low"], "")
            out[f"{name}_ci_high"] = result(c["ci_high"], "")
    for label, arm in arms.items():
        tok_s = arm["completion_tokens"] / arm["seconds"] if arm["seconds"] else 0.0
        out[f"{label}_seconds"] = result(
            arm["seconds"],
            "s",
            notes=f"{label}: {arm['completion_tokens']} completion tokens, "
            f"{tok_s:.1f} tok/s over the arm",
        )
    base = report["baseline_arm"]
    for label, arm in arms.items():
        if label != base and arms[base]["seconds"]:
            out[f"{label}_over_{base}_seconds"] = result(
                arm["seconds"] / arms[base]["seconds"], "x"
            )
    out["faithful_answers"] = result(
        faithful["answer_equal"],
        f"of {faithful['of']}",
        notes=(
            f"{base} arm's answers equal to the recorded rollout's final_answer: "
            f"{faithful['answer_equal']} of {faithful['of']}; reply text identical: "
            f"{faithful['reply_equal']}; rollouts whose PI needed a repair call: "
            f"{faithful['repaired']}"
        ),
    )
    return out


def _setup_note(report: Mapping[str, Any]) -> str:
    setup = report.get("setup", {})
    if not setup:
        return ""
    return (
        f"PI prompts of {setup['prefix']} replayed on {setup['models']} "
        f"({setup['concurrency']} in flight, {setup['request']}); recorded by pi versions "
        f"{setup['recorded_versions']}; skipped {len(setup['skipped'])}; per-task answers in "
        f"{setup.get('output', '')}"
    )


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run.py``."""
    if skip_real():
        return {}
    knobs = _knobs()
    if not (knobs["root"] / "runs" / knobs["run"] / "evaluate" / knobs["set"]).is_dir():
        # A bare clone has no evaluation run to replay: `make bench` goes on without this row.
        print(
            f"  skipped: no evaluated set {knobs['set']!r} of run {knobs['run']!r} under "
            f"{knobs['root']} (CHIMERA_BENCH_REPLAY_ROOT, _RUN, _SET)",
            flush=True,
        )
        return {}
    report = measure(knobs)
    out = HERE / "results" / f"pi_replay-{knobs['run']}-{knobs['set']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report["setup"]["output"] = str(out.relative_to(REPO))
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  per-task answers: {out}", flush=True)
    return rows(report)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
