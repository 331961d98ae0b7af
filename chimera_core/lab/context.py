"""What one rollout binds at run time: the task, the models, the tools and the supervisor policy.

It travels as LangGraph's runtime context, so one compiled graph serves every rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chimera_core.config.models import ChimeraConfig
from chimera_core.data.tasks import ResearchTask
from chimera_core.lab.models import ModelProvider
from chimera_core.lab.supervisor_policy import SupervisorPolicy
from chimera_core.plugins import Tool, ToolContext, get_registry

DEFAULT_MAX_TOOL_ROUNDS = 3


def registry_tools(name: str) -> Tool:
    """Look a tool up in the process-wide plugin registry (unknown names list known ones)."""
    tool: Tool = get_registry().tool(name)
    return tool


@dataclass(frozen=True)
class LabContext:
    """Per-rollout bindings. ``task`` holds the label; nodes show agents only its agent view."""

    config: ChimeraConfig
    task: ResearchTask
    provider: ModelProvider
    tools: Callable[[str], Tool] = registry_tools
    supervisor_policy: SupervisorPolicy | None = None
    max_turns: int = 15
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    json_mode: bool = True
    offer_tools: bool | None = None

    def offers_tools(self, role: str) -> bool:
        """Whether the role's model is offered its tools to call (beyond the evidence step).

        ``None`` (auto) follows the alias's ``tool_calls`` setting: a small model cannot call
        tools, and the tool instructions would only lengthen its prompts.
        """
        if self.offer_tools is not None:
            return self.offer_tools
        return self.config.models[self.config.roles[role].model].tool_calls

    def tool_context(self, role: str) -> ToolContext:
        """The context a tool is called with on behalf of a role."""
        return ToolContext(config=self.config, task=self.task, role=role)
