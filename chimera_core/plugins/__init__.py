"""The public plugin API: everything a Chimera plugin imports, from this one module.

Built-in plugins (``chimera_plugins``) import only this module and their own libraries, as a
third party's do; ``make lint`` holds them to it. ``docs/plugins.md`` documents each name.
"""

from chimera_core.config.models import ChimeraConfig, DataConfig, ToolsConfig
from chimera_core.data.agent_outputs import (
    JuniorResearch,
    PIDecision,
    Protocol,
    RefinedHypothesis,
    ReviewDecision,
    SupervisorChoice,
)
from chimera_core.data.output_parsing import OutputError, parse_output
from chimera_core.data.pubmedqa import load_tasks as load_pubmedqa_tasks
from chimera_core.data.rollouts import RolloutRecord
from chimera_core.data.tasks import ResearchTask
from chimera_core.data.training_data import BanditSample, RLExample, SFTExample, TrainingData
from chimera_core.errors import ChimeraError, PluginError
from chimera_core.logs import get_logger
from chimera_core.plugins.config_check import check_config, load_checked_config
from chimera_core.plugins.hookspecs import hookimpl
from chimera_core.plugins.manager import PluginRegistry, build_registry, get_registry
from chimera_core.plugins.types import (
    Algorithm,
    AlgorithmOptions,
    ChatFn,
    OnlineLab,
    Reward,
    RewardInput,
    RewardScore,
    ScoreCompletion,
    Tool,
    ToolContext,
    TraceAdapter,
    TracedRollout,
    TrainRequest,
    TrainResult,
)
from chimera_core.training.bandit import LinearBanditPolicy, OffPolicyEstimate
from chimera_core.training.checkpoint import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    TARGET_MODULES,
    adapter_rank,
    is_adapter_dir,
    load_base,
)

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "TARGET_MODULES",
    "Algorithm",
    "AlgorithmOptions",
    "BanditSample",
    "ChatFn",
    "ChimeraConfig",
    "ChimeraError",
    "DataConfig",
    "JuniorResearch",
    "LinearBanditPolicy",
    "OffPolicyEstimate",
    "OnlineLab",
    "OutputError",
    "PIDecision",
    "PluginError",
    "PluginRegistry",
    "Protocol",
    "RLExample",
    "RefinedHypothesis",
    "ResearchTask",
    "ReviewDecision",
    "Reward",
    "RewardInput",
    "RewardScore",
    "RolloutRecord",
    "SFTExample",
    "ScoreCompletion",
    "SupervisorChoice",
    "Tool",
    "ToolContext",
    "ToolsConfig",
    "TraceAdapter",
    "TracedRollout",
    "TrainRequest",
    "TrainResult",
    "TrainingData",
    "adapter_rank",
    "build_registry",
    "check_config",
    "get_logger",
    "get_registry",
    "hookimpl",
    "is_adapter_dir",
    "load_base",
    "load_checked_config",
    "load_pubmedqa_tasks",
    "parse_output",
]
