"""The built-in algorithm plugins (sft, grpo, bandit) through their public contract.

Each gets a ``TrainRequest`` built by hand, as a training stage builds it: a tiny random Llama as
the base (trains in seconds on a CPU), a few examples, options from the plugin's own model,
``save_artifact`` collecting bytes and ``score_completion`` a stub. Checked: what each keeps of
its data, when it skips, what it saves and reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file

from chimera_core.config import load_config
from chimera_core.logs import get_logger
from chimera_core.plugins import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    BanditSample,
    ChimeraConfig,
    ChimeraError,
    LinearBanditPolicy,
    RLExample,
    SFTExample,
    TrainingData,
    TrainRequest,
    build_registry,
)
from chimera_plugins.algorithms import sft_trainer
from chimera_plugins.algorithms.bandit import BanditAlgorithm
from chimera_plugins.algorithms.digest import data_sha256
from chimera_plugins.algorithms.grpo import GRPOAlgorithm, grpo_examples, senior_reward
from chimera_plugins.algorithms.options import BanditOptions, GRPOOptions, SFTOptions
from chimera_plugins.algorithms.sft import SFTAlgorithm, select_successful

# ---------------------------------------------------------------------------------------------
# The request a stage builds


class Saved(dict[str, bytes]):
    """``save_artifact``: bytes by name, returning a URI like the stage's."""

    def __call__(self, name: str, data: bytes) -> str:
        self[name] = data
        return f"file:///artifacts/{name}"


@pytest.fixture(scope="module")
def config() -> ChimeraConfig:
    return load_config("local", environ={})


MakeRequest = Callable[..., TrainRequest]


@pytest.fixture
def make_request(config: ChimeraConfig, tiny_llama_dir: Path, tmp_path: Path) -> MakeRequest:
    def make(
        options: Any,
        data: TrainingData,
        *,
        stage: str = "sft",
        alias: str = "junior",
        base_model: Path | None = tiny_llama_dir,
        parent: Path | None = None,
        save_artifact: Saved | None = None,
        score_completion: Callable[[str, str, str, str], float | None] | None = None,
        output_dir: Path | None = None,
    ) -> TrainRequest:
        extra: dict[str, Any] = {}
        if score_completion is not None:
            extra["score_completion"] = score_completion
        return TrainRequest(
            stage=stage,
            run_id="r1",
            alias=alias,
            config=config,
            options=options,
            data=data,
            tasks={},
            output_dir=output_dir or tmp_path / "out",
            log=get_logger("training", run_id="r1", stage=stage),
            base_model=base_model,
            parent=parent,
            save_artifact=save_artifact if save_artifact is not None else Saved(),
            **extra,
        )

    return make


def test_the_built_ins_are_registered_with_their_options_models() -> None:
    registry = build_registry(environ={"CHIMERA_PLUGINS": ""})
    assert isinstance(registry.algorithm("sft"), SFTAlgorithm)
    assert isinstance(registry.algorithm("grpo"), GRPOAlgorithm)
    assert isinstance(registry.algorithm("bandit"), BanditAlgorithm)
    assert registry.algorithm("sft").options_model is SFTOptions
    assert registry.algorithm("grpo").options_model is GRPOOptions
    assert registry.algorithm("bandit").options_model is BanditOptions


# ---------------------------------------------------------------------------------------------
# sft


def _conversation(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": f"Does drug {i} lower blood pressure?"},
        {"role": "assistant", "content": json.dumps({"hypothesis": f"Drug {i} lowers it"})},
    ]


def _sft_data(*rewards: float) -> TrainingData:
    examples = [
        SFTExample(
            role="Geneticist",
            task_id=f"t{i}",
            rollout_id=f"ro-{i}",
            reward=r,
            messages=_conversation(i),
        )
        for i, r in enumerate(rewards)
    ]
    return TrainingData(sft=examples, n_rollouts=len(rewards))


def _sft_options(**fields: Any) -> SFTOptions:
    values: dict[str, Any] = {
        "lora_r": 4,
        "lora_alpha": 8,
        "max_steps": 1,
        "batch_size": 2,
        "grad_accum": 1,
        "max_seq_length": 128,
        "learning_rate": 1e-2,
        "use_unsloth": "never",
    }
    values.update(fields)
    return SFTOptions.model_validate(values)


def _jsonl(data: bytes) -> list[SFTExample]:
    return [SFTExample.model_validate_json(line) for line in data.splitlines()]


def test_select_successful_by_threshold_or_top_quantile() -> None:
    examples = _sft_data(0.9, 0.5, 0.8, 0.2).sft
    kept, threshold = select_successful(examples, 0.8, None)
    assert [e.reward for e in kept] == [0.9, 0.8] and threshold == 0.8  # inclusive
    kept, threshold = select_successful(examples, 0.8, 0.5)  # the quantile wins
    assert threshold == pytest.approx(float(np.quantile([0.9, 0.5, 0.8, 0.2], 0.5)))
    assert [e.reward for e in kept] == [0.9, 0.8]
    kept, threshold = select_successful(examples, 0.0, 0.25)
    assert [e.reward for e in kept] == [0.9]
    assert select_successful([], 0.7, 0.5) == ([], 0.7)


def test_sft_with_no_example_over_the_threshold_skips_and_saves_an_empty_dataset(
    make_request: MakeRequest,
) -> None:
    saved = Saved()
    request = make_request(
        _sft_options(reward_threshold=0.95), _sft_data(0.9, 0.5), save_artifact=saved
    )
    result = SFTAlgorithm().train(request)
    assert result.output_dir is None
    assert result.skipped == "no junior conversation passed the reward threshold"
    assert result.metrics == {"examples": 2, "kept": 0, "threshold": 0.95, "rollouts": 2}
    assert saved == {"sft_data.jsonl": b""}
    assert not request.output_dir.exists()


def test_sft_with_no_data_at_all_skips(make_request: MakeRequest) -> None:
    result = SFTAlgorithm().train(make_request(_sft_options(), TrainingData()))
    assert result.output_dir is None and result.skipped is not None
    assert result.metrics["examples"] == 0


def test_sft_hands_the_trainer_only_the_kept_conversations_and_the_parent(
    make_request: MakeRequest,
    tiny_llama_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_train_sft(base_dir: Path, conversations: Any, cfg: Any, output_dir: Path, **kw: Any):
        calls.append(
            {"base": base_dir, "convs": conversations, "cfg": cfg, "out": output_dir, **kw}
        )
        return sft_trainer.SFTResult(output_dir=str(output_dir), backend="trl", n_conversations=2,
                                     n_examples=2, steps=1, losses=[1.0], seconds=0.1,
                                     seconds_per_step=0.1)  # fmt: skip

    monkeypatch.setattr(sft_trainer, "train_sft", fake_train_sft)
    options = _sft_options(reward_threshold=0.0, top_quantile=0.5)
    data = _sft_data(0.1, 0.9, 0.6, 0.3)
    parent = tmp_path / "champion"
    saved = Saved()
    request = make_request(options, data, parent=parent, save_artifact=saved)
    result = SFTAlgorithm().train(request)
    kept = [data.sft[1], data.sft[2]]  # the top half
    assert calls == [
        {
            "base": tiny_llama_dir,
            "convs": [e.messages for e in kept],
            "cfg": options,
            "out": request.output_dir,
            "parent_adapter": parent,
        }
    ]
    assert _jsonl(saved["sft_data.jsonl"]) == kept
    assert result.output_dir == request.output_dir and result.skipped is None
    assert result.metrics["kept"] == 2 and result.metrics["examples"] == 4
    assert result.metrics["steps"] == 1 and result.metrics["backend"] == "trl"
    assert result.data_sha256 == data_sha256(kept)
    assert result.config == {"algorithm": "sft", **options.model_dump(mode="json")}


def test_sft_without_a_base_model_is_a_user_error(make_request: MakeRequest) -> None:
    request = make_request(_sft_options(reward_threshold=0.0), _sft_data(1.0), base_model=None)
    with pytest.raises(ChimeraError, match="has no base model"):
        SFTAlgorithm().train(request)


def test_sft_trains_a_lora_adapter_on_the_kept_conversations(make_request: MakeRequest) -> None:
    saved = Saved()
    data = _sft_data(0.9, 0.85, 0.3)
    request = make_request(_sft_options(reward_threshold=0.8), data, save_artifact=saved)
    result = SFTAlgorithm().train(request)
    out = request.output_dir
    assert result.output_dir == out and result.skipped is None
    assert sorted(p.name for p in out.iterdir()) == [
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
        "chimera_training.json",
    ]
    assert json.loads((out / ADAPTER_CONFIG).read_text())["r"] == 4
    weights = load_file(str(out / ADAPTER_WEIGHTS))
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    # lora_B starts at zero: non-zero after the step means the adapter trained.
    assert lora_b and all(bool(w.abs().sum() > 0) for w in lora_b)
    assert result.metrics["steps"] == 1 and result.metrics["kept"] == 2
    assert len(result.metrics["losses"]) == 1
    assert [e.task_id for e in _jsonl(saved["sft_data.jsonl"])] == ["t0", "t1"]
    assert result.data_sha256 == data_sha256(data.sft[:2])


# ---------------------------------------------------------------------------------------------
# grpo


def _rl(role: str, task_id: str, prompt: str, **fields: Any) -> RLExample:
    messages = [
        {"role": "system", "content": f"You are {role}."},
        {"role": "user", "content": prompt},
    ]
    values: dict[str, Any] = {
        "role": role,
        "task_id": task_id,
        "rollout_id": f"ro-{task_id}",
        "reward": 0.5,
        "prompt_messages": messages,
    }
    values.update(fields)
    return RLExample.model_validate(values)


class StubScore:
    """``score_completion``: None (does not parse) unless the text has a brace; records calls."""

    def __init__(self, quality: float = 0.5) -> None:
        self.quality = quality
        self.calls: list[tuple[str, str, str, str]] = []

    def __call__(self, role: str, task_id: str, text: str, reward: str) -> float | None:
        self.calls.append((role, task_id, text, reward))
        return self.quality if "{" in text else None


class VariedScore(StubScore):
    """Every completion parses; quality varies with the text (non-zero group advantages)."""

    def __call__(self, role: str, task_id: str, text: str, reward: str) -> float | None:
        self.calls.append((role, task_id, text, reward))
        return sum(map(ord, text)) % 101 / 100


def test_the_grpo_reward_is_zero_unparsed_else_schema_weight_plus_quality() -> None:
    score = StubScore(quality=0.5)
    options = GRPOOptions(schema_weight=0.3)
    reward = senior_reward(score, options)
    values = reward(
        prompts=[[], [], [], []],
        completions=[
            [{"role": "assistant", "content": '{"title": "t"}'}],  # conversational, parses
            [{"role": "assistant", "content": "no json here"}],  # does not parse
            '{"refined_hypothesis": "x"}',  # plain text, parses
            '{"a": 1}',  # a role without a reward plugin
        ],
        role=["ProtocolDesigner", "ProtocolDesigner", "HypothesisRefiner", "PeerReviewer"],
        task_id=["t1", "t2", "t3", "t4"],
        completion_ids=[[1], [2], [3], [4]],  # extra TRL columns are ignored
    )
    assert values == pytest.approx([0.3 + 0.7 * 0.5, 0.0, 0.3 + 0.7 * 0.5, 0.0])
    assert score.calls == [
        ("ProtocolDesigner", "t1", '{"title": "t"}', "protocol_rubric"),
        ("ProtocolDesigner", "t2", "no json here", "protocol_rubric"),
        ("HypothesisRefiner", "t3", '{"refined_hypothesis": "x"}', "hypothesis_grounding"),
    ]  # the reviewer's completion is never scored
    full = senior_reward(StubScore(quality=1.0), GRPOOptions(schema_weight=0.0))
    assert full([[]], ['{"x": 1}'], role=["ProtocolDesigner"], task_id=["t"]) == [1.0]


def test_grpo_examples_keep_distinct_prompts_of_the_rewarded_roles() -> None:
    rl = [
        _rl("ProtocolDesigner", "t1", "design it"),
        _rl("ProtocolDesigner", "t1", "design it", rollout_id="other"),  # same prompt
        _rl("HypothesisRefiner", "t1", "refine it"),
        _rl("PeerReviewer", "t1", "review it"),  # no reward plugin for the role
        _rl("ProtocolDesigner", "t2", "", prompt_messages=[]),  # no prompt
        _rl(
            "HypothesisRefiner",
            "t3",
            "",
            prompt_messages=[{"role": "user", "content": None, "name": "HypothesisRefiner"}],
        ),
    ]
    examples = grpo_examples(rl, set(GRPOOptions().role_rewards))
    assert [(e["role"], e["task_id"]) for e in examples] == [
        ("ProtocolDesigner", "t1"),
        ("HypothesisRefiner", "t1"),
        ("HypothesisRefiner", "t3"),
    ]
    assert examples[0]["prompt"] == rl[0].prompt_messages
    assert examples[2]["prompt"] == [{"role": "user", "content": ""}]  # only role and content
    assert len(grpo_examples(rl)) == 4  # no role filter: the reviewer's prompt too


def test_grpo_without_prompts_of_the_rewarded_roles_skips(make_request: MakeRequest) -> None:
    data = TrainingData(rl=[_rl("PeerReviewer", "t1", "review it")])
    request = make_request(GRPOOptions(), data, stage="ppo", alias="senior")
    result = GRPOAlgorithm().train(request)
    assert result.output_dir is None
    assert result.skipped == "no prompts of HypothesisRefiner, ProtocolDesigner in the traces"
    assert result.metrics == {"calls": 0, "prompts": 0}
    assert not request.output_dir.exists()


def test_grpo_trains_one_step_and_saves_an_adapter(make_request: MakeRequest) -> None:
    score = VariedScore()
    data = TrainingData(
        rl=[
            _rl("ProtocolDesigner", "t1", "Design a trial of drug 1."),
            _rl("HypothesisRefiner", "t2", "Refine: drug 2 lowers it."),
            _rl("PeerReviewer", "t3", "Review it."),
        ]
    )
    options = GRPOOptions(total_steps=1, rollout_n=2, train_batch_size=2, max_response_length=8,
                          max_prompt_length=64, learning_rate=1e-2, lora_r=4)  # fmt: skip
    request = make_request(options, data, stage="ppo", alias="senior", score_completion=score)
    result = GRPOAlgorithm().train(request)
    out = request.output_dir
    assert result.output_dir == out and result.skipped is None
    assert sorted(p.name for p in out.iterdir()) == [
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
        "chimera_training.json",
    ]
    assert json.loads((out / ADAPTER_CONFIG).read_text())["r"] == 4
    weights = load_file(str(out / ADAPTER_WEIGHTS))
    assert weights and all("lora_A" in k or "lora_B" in k for k in weights)
    # lora_B starts at zero: the step moved it (the two completions scored differently).
    assert all(bool(w.abs().sum() > 0) for k, w in weights.items() if "lora_B" in k)
    assert result.metrics["calls"] == 2 and result.metrics["prompts"] == 2
    assert result.metrics["steps"] == 1 and len(result.metrics["mean_rewards"]) == 1
    assert result.config["algorithm"] == "grpo" and result.config["lora_r"] == 4
    # The completions were scored through the stub, for the rewarded roles only.
    assert score.calls and {c[0] for c in score.calls} <= {"ProtocolDesigner", "HypothesisRefiner"}
    assert {c[3] for c in score.calls} <= {"protocol_rubric", "hypothesis_grounding"}
    assert len(score.calls) == 2  # one group of rollout_n completions of one prompt per step


# ---------------------------------------------------------------------------------------------
# bandit

GOAL = "Does aspirin reduce stroke recurrence in adults?"
PAYING = "Aspirin reduces stroke recurrence in adults"
ARMS = ["Gut microbiome shifts explain everything", PAYING, "More research is needed"]


def _bandit_data(n: int = 24, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        chosen = int(rng.integers(len(ARMS)))
        samples.append(
            BanditSample(
                task_id=f"t{i}",
                goal=GOAL,
                hypotheses=ARMS,
                chosen=chosen,
                propensity=1 / 3,
                reward=float(ARMS[chosen] == PAYING),
            )
        )
    return TrainingData(bandit=samples, n_rollouts=n)


def test_bandit_with_no_samples_skips(make_request: MakeRequest) -> None:
    request = make_request(BanditOptions(), TrainingData(), stage="bandit", alias="supervisor")
    result = BanditAlgorithm().train(request)
    assert result.output_dir is None
    assert result.skipped == "no supervisor decisions with propensities were logged"
    assert result.metrics == {"samples": 0}
    assert not request.output_dir.exists()


def test_bandit_starts_a_fresh_policy_without_a_parent(make_request: MakeRequest) -> None:
    options = BanditOptions(n_features=2**8, epsilon=0.1, l2=1e-4)
    data = _bandit_data()
    request = make_request(options, data, stage="bandit", alias="supervisor", base_model=None)
    result = BanditAlgorithm().train(request)
    assert result.output_dir == request.output_dir and result.skipped is None
    meta = json.loads((request.output_dir / "bandit.json").read_text())
    assert meta == {"n_features": 2**8, "epsilon": 0.1, "l2": 1e-4, "n_updates": len(data.bandit)}
    policy = LinearBanditPolicy.load(request.output_dir)
    assert int(np.argmax(policy.scores(GOAL, ARMS))) == 1  # learned the paying arm
    off = result.metrics["off_policy"]
    assert result.metrics["samples"] == len(data.bandit)
    assert off["n"] == len(data.bandit) and off["snips"] == pytest.approx(1.0)
    assert off["logged_value"] == pytest.approx(np.mean([s.reward for s in data.bandit]))
    assert result.data_sha256 == data_sha256(list(data.bandit))
    assert result.config == {"algorithm": "bandit", **options.model_dump(mode="json")}


def test_bandit_continues_the_parent_policy(make_request: MakeRequest, tmp_path: Path) -> None:
    first = make_request(
        BanditOptions(n_features=2**8, epsilon=0.3),
        _bandit_data(seed=0),
        stage="bandit",
        alias="supervisor",
        output_dir=tmp_path / "v1",
    )
    BanditAlgorithm().train(first)
    parent_meta = (first.output_dir / "bandit.json").read_text()
    # The options of this run name another width: the parent's own settings are kept.
    second = make_request(
        BanditOptions(n_features=2**10, epsilon=0.05),
        _bandit_data(n=10, seed=1),
        stage="bandit",
        alias="supervisor",
        parent=first.output_dir,
        output_dir=tmp_path / "v2",
    )
    result = BanditAlgorithm().train(second)
    assert result.output_dir == tmp_path / "v2"
    meta = json.loads((tmp_path / "v2" / "bandit.json").read_text())
    assert meta["n_updates"] == 24 + 10  # continued, not restarted
    assert (meta["n_features"], meta["epsilon"]) == (2**8, 0.3)
    assert (first.output_dir / "bandit.json").read_text() == parent_meta  # parent untouched
    parent, child = (
        LinearBanditPolicy.load(first.output_dir),
        LinearBanditPolicy.load(tmp_path / "v2"),
    )
    assert not np.allclose(parent.scores(GOAL, ARMS), child.scores(GOAL, ARMS))
    assert int(np.argmax(child.scores(GOAL, ARMS))) == 1


def test_a_fresh_and_a_continued_policy_differ(make_request: MakeRequest, tmp_path: Path) -> None:
    parent = LinearBanditPolicy(n_features=2**8)
    parent.update(_bandit_data(seed=2).bandit)
    parent.save(tmp_path / "parent")
    data = _bandit_data(n=6, seed=3)
    outs = {}
    for name, parent_dir in (("fresh", None), ("continued", tmp_path / "parent")):
        request = make_request(
            BanditOptions(n_features=2**8),
            data,
            stage="bandit",
            alias="supervisor",
            parent=parent_dir,
            output_dir=tmp_path / name,
        )
        BanditAlgorithm().train(request)
        outs[name] = LinearBanditPolicy.load(tmp_path / name)
    assert outs["fresh"].n_updates == 6 and outs["continued"].n_updates == 24 + 6
    assert not np.allclose(outs["fresh"].scores(GOAL, ARMS), outs["continued"].scores(GOAL, ARMS))
