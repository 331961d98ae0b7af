"""Test doubles for the lab: a chat model that replays queued replies, per-role providers, tools."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from chimera_core.errors import PluginError
from chimera_core.plugins import ToolContext

JUNIORS = ("Geneticist", "Pharmacologist", "Neurologist")

GOOD: dict[str, str] = {
    "Supervisor": '{"selected_index": 1, "justification": "best supported"}',
    "HypothesisRefiner": '{"refined_hypothesis": "X lowers Y in adults", "rationale": "PICO"}',
    "ProtocolDesigner": json.dumps(
        {
            "title": "Cohort study of X and Y",
            "steps": ["Recruit 100 adults", "Measure Y", "Compare groups"],
            "safety_concerns": ["consent"],
            "budget_usd": 50000,
        }
    ),
    "PeerReviewer": '{"decision": "APPROVE", "critique_severity": "MINOR", "feedback": "ok"}',
    "SafetyOfficer": '{"decision": "APPROVE", "critique_severity": "MINOR", "feedback": "safe"}',
    "PrincipalInvestigator": '{"final_decision": "GO", "answer": "yes", "rationale": "clear"}',
}
for _name in JUNIORS:
    GOOD[_name] = json.dumps(
        {"hypothesis": f"{_name} hypothesis", "supporting_papers": ["11111111"]}
    )


def review(decision: str, severity: str) -> str:
    """A review-board reply."""
    return json.dumps({"decision": decision, "critique_severity": severity, "feedback": severity})


def tool_call(name: str, query: str, call_id: str = "call-1") -> AIMessage:
    """A reply that asks for one tool call."""
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": {"query": query}, "id": call_id}]
    )


class ScriptedChatModel(BaseChatModel):
    """Replays queued replies in order and records every prompt it was sent."""

    replies: list[Any] = Field(default_factory=list)
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[Any] = Field(default_factory=list)
    fallback: str | None = None

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.prompts.append(list(messages))
        if self.replies:
            reply = self.replies.pop(0)
        elif self.fallback is not None:
            reply = self.fallback
        else:
            raise AssertionError(f"no scripted reply left after {len(self.prompts)} calls")
        if isinstance(reply, str):
            reply = AIMessage(
                content=reply,
                usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            )
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        self.bound_tools = list(tools)
        return self


class ScriptedProvider:
    """One scripted model per role; roles without a script answer with a valid default."""

    def __init__(self, scripts: Mapping[str, Iterable[Any]] | None = None) -> None:
        self.models: dict[str, ScriptedChatModel] = {}
        for role, good in GOOD.items():
            replies = list((scripts or {}).get(role, []))
            self.models[role] = ScriptedChatModel(replies=replies, fallback=good)

    def for_role(self, role: str) -> BaseChatModel:
        return self.models[role]

    def calls(self, role: str) -> int:
        """How many times a role's model was called."""
        return len(self.models[role].prompts)


class FakeTool:
    """A tool that answers with a fixed PMID line and records its queries."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"fake {name}"
        self.queries: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def run(self, query: str, context: ToolContext) -> str:
        with self._lock:
            self.queries.append((query, context.role))
        return f"PMID 11111111: evidence from {self.name}"


class FakeTools:
    """A tool lookup over fake tools, for ``run_task(tools=...)``."""

    def __init__(self) -> None:
        names = (
            "pubmed_search",
            "clinical_trials_search",
            "protein_database_lookup",
            "gene_ontology_lookup",
        )
        self.tools = {n: FakeTool(n) for n in names}

    def __call__(self, name: str) -> FakeTool:
        if name not in self.tools:  # as the plugin registry does
            raise PluginError(f"unknown tool {name!r} (known: {', '.join(self.tools)})")
        return self.tools[name]
