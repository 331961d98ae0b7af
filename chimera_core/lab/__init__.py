"""The research lab: roles, tools and the LangGraph workflow that runs one task."""

from chimera_core.lab.graph import build_graph
from chimera_core.lab.models import ConfigModelProvider, ModelProvider
from chimera_core.lab.run import LabEvent, run_task, state_to_json
from chimera_core.lab.state import AgentState
from chimera_core.lab.supervisor_policy import Choice, EpsilonExplore, LLMPolicy, SupervisorPolicy

__all__ = [
    "AgentState",
    "Choice",
    "ConfigModelProvider",
    "EpsilonExplore",
    "LLMPolicy",
    "LabEvent",
    "ModelProvider",
    "SupervisorPolicy",
    "build_graph",
    "run_task",
    "state_to_json",
]
