"""Profiles load, env overrides apply, and every problem is reported with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chimera_core.config import load_config, redacted_dump, resolve_profile_path
from chimera_core.errors import ConfigError


@pytest.mark.parametrize("profile", ["local", "gpu"])
def test_shipped_profiles_are_valid(profile: str) -> None:
    config = load_config(profile, environ={})
    assert config.profile == profile
    assert config.roles_of_tier("junior") == ["Geneticist", "Pharmacologist", "Neurologist"]
    assert {r for r, c in config.roles.items() if c.trainable} == {
        "HypothesisRefiner",
        "ProtocolDesigner",
        "PrincipalInvestigator",
    }
    assert abs(sum(config.rewards.judge_criteria.values()) - 1.0) < 1e-9


def test_env_overrides_nested_keys_and_role_names_case_insensitively() -> None:
    config = load_config(
        "local",
        environ={
            "CHIMERA_STAGES__SFT__OPTIONS__SFT__MAX_STEPS": "3",
            "CHIMERA_ROLES__SUPERVISOR__TEMPERATURE": "0.5",
            "CHIMERA_ARTIFACTS__BACKEND": "s3",
            "CHIMERA_PUBMEDQA_FILE": "/data/ori_pqal.json",
        },
    )
    assert int(config.stages.sft.chosen_options()["max_steps"]) == 3
    assert config.roles["Supervisor"].temperature == 0.5
    assert config.artifacts.backend == "s3"
    assert config.data.source == "file"
    assert config.data.file == Path("/data/ori_pqal.json")


def test_empty_and_reserved_variables_leave_the_profile_as_it_is() -> None:
    base = load_config("local", environ={})
    config = load_config(
        "local",
        environ={
            "CHIMERA_STAGES__GATHER__N_TASKS": "",  # an unset Airflow param renders as ''
            "CHIMERA_STAGES__EVALUATE__MODEL_SET": " ",
            "CHIMERA_BENCH_SKIP_REAL": "1",
            "CHIMERA_SHARED_DIR": "/elsewhere/shared",
            "CHIMERA_CLI": "/opt/bin/chimera",
        },
    )
    assert config.stages.gather.n_tasks == base.stages.gather.n_tasks
    assert config.stages.evaluate.model_set == base.stages.evaluate.model_set


def test_every_problem_is_listed_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(
            "local",
            environ={
                "CHIMERA_STAGES__GATHER__N_TASKS": "-1",
                "CHIMERA_ARTIFACTS__BACKND": "s3",
                "CHIMERA_TRACKING__WANDB_MODE": "sometimes",
            },
        )
    problems = err.value.problems
    assert len(problems) == 3
    assert any(p.startswith("stages.gather.n_tasks:") and "-1" in p for p in problems)
    assert "artifacts.backnd: unknown key (set by CHIMERA_ARTIFACTS__BACKND)" in problems
    assert err.value.source == "environment"  # every problem is the environment's
    assert any(p.startswith("tracking.wandb_mode:") and "'offline'" in p for p in problems)


def test_unknown_model_alias_names_the_role_and_known_aliases(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "models:\n  m: {served_model: x}\n"
        "roles:\n  A: {tier: junior, model: nope}\n"
        "rewards: {judge_model: m}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(str(profile), environ={})
    assert err.value.problems == ["roles.A.model: unknown model alias 'nope' (expected one of: m)"]


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="expected one of: .*local"):
        load_config("nonexistent", environ={})


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    profile = tmp_path / "bad.yaml"
    profile.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(str(profile), environ={})


def test_secrets_are_redacted() -> None:
    config = load_config(
        "gpu",
        environ={"CHIMERA_ARTIFACTS__SECRET_KEY": "hunter2", "CHIMERA_ARTIFACTS__ACCESS_KEY": "ak"},
    )
    assert config.artifacts.secret_key is not None
    assert config.artifacts.secret_key.get_secret_value() == "hunter2"
    dumped = str(redacted_dump(config))
    assert "hunter2" not in dumped and "'ak'" not in dumped


def test_nested_env_reaches_every_level_and_reads_lists_and_sections() -> None:
    config = load_config(
        "local",
        environ={
            "CHIMERA_MODELS__JUNIOR__SAMPLING__MAX_TOKENS": "64",  # alias -> model -> section
            "CHIMERA_ROLES__GENETICIST__TOOLS": "[pubmed_search]",  # YAML flow, as in profiles
            "CHIMERA_ROLES__NEUROLOGIST__TOOLS": '["pubmed_search", "gene_ontology_lookup"]',
            "CHIMERA_ROLES__SUPERVISOR__TEMPERATURE": "null",
            "CHIMERA_TRACKING": '{"wandb_project": "p", "metrics_jsonl": false}',
            "CHIMERA_TRACKING__WANDB_MODE": "disabled",
            "CHIMERA_ARTIFACTS__PREFIX": "007",  # a string field keeps its digits
        },
    )
    assert config.models["junior"].sampling.max_tokens == 64
    assert config.models["junior"].sampling.temperature == 0.7  # the rest of the profile stays
    assert config.roles["Geneticist"].tools == ["pubmed_search"]
    assert config.roles["Neurologist"].tools == ["pubmed_search", "gene_ontology_lookup"]
    assert config.roles["Supervisor"].temperature is None
    assert (config.tracking.wandb_project, config.tracking.metrics_jsonl) == ("p", False)
    assert config.tracking.wandb_mode == "disabled"
    assert config.artifacts.prefix == "007"


def test_empty_values_are_ignored_at_every_level() -> None:
    base = load_config("gpu", environ={})
    config = load_config(
        "gpu",
        environ={
            "CHIMERA_ARTIFACTS__BACKEND": "",
            "CHIMERA_MODELS__JUNIOR__SAMPLING__MAX_TOKENS": "",
            "CHIMERA_ROLES__GENETICIST__TOOLS": "",
            "CHIMERA_TRACKING": "",
            "CHIMERA_SERVING": "  ",
        },
    )
    assert base.artifacts.backend == "s3"
    assert redacted_dump(config) == redacted_dump(base)


def test_precedence_profile_then_env_then_explicit_overrides(tmp_path: Path) -> None:
    environ = {
        "CHIMERA_ARTIFACTS__BUCKET": "from-env",
        "CHIMERA_ARTIFACTS__PREFIX": "from-env",
        "CHIMERA_DATA__FILE": "/env/data.json",
        "CHIMERA_DATA__SOURCE": "file",
        "CHIMERA_PUBMEDQA_FILE": "/pubmedqa/ori_pqal.json",
    }
    config = load_config("local", environ=environ, overrides={"artifacts.prefix": "explicit"})
    assert (config.artifacts.bucket, config.artifacts.prefix) == ("from-env", "explicit")
    assert config.data.file == Path("/pubmedqa/ori_pqal.json")
    assert load_config("local", environ={}).artifacts.bucket == "chimera"


def test_a_bad_env_value_names_the_variable_or_key_path() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("local", environ={"CHIMERA_ROLES__GENETICIST__TOOLS": "[pubmed_search"})
    (problem,) = err.value.problems
    assert problem.startswith("CHIMERA_ROLES__GENETICIST__TOOLS: not valid JSON or YAML")
    assert err.value.source == "environment"
    with pytest.raises(ConfigError) as err:
        load_config("local", environ={"CHIMERA_MODELS__JUNIOR__SAMPLING__MAX_TOKENS": "lots"})
    (problem,) = err.value.problems
    assert problem.startswith("models.junior.sampling.max_tokens:") and "'lots'" in problem
    with pytest.raises(ConfigError, match="stagess: unknown key"):
        load_config("local", environ={"CHIMERA_STAGESS__GATHER__N_TASKS": "2"})


def test_a_bad_env_value_is_blamed_on_the_variable_not_the_profile_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chimera_core.cli.main import main

    monkeypatch.setenv("CHIMERA_STAGES__GATHER__N_TASKS", "abc")
    assert main(["config", "validate"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "invalid configuration (environment)" in err and "local.yaml" not in err
    assert "stages.gather.n_tasks:" in err and "(set by CHIMERA_STAGES__GATHER__N_TASKS)" in err
    # A problem of the file and one of the environment: each named as what it is.
    profile = tmp_path / "p.yaml"
    profile.write_text(Path(resolve_profile_path("local")).read_text() + "tools: {top_k: 99}\n")
    assert main(["config", "validate", "--profile", str(profile)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"({profile} and the environment)" in err
    assert "tools.top_k:" in err and "(got 99) - stages" in err  # the file's, not blamed
    # An explicit override set last is not the variable's doing.
    with pytest.raises(ConfigError) as exc:
        load_config(
            "local",
            environ={"CHIMERA_STAGES__GATHER__N_TASKS": "2"},
            overrides={"stages.gather.n_tasks": "x"},
        )
    assert "set by" not in str(exc.value) and exc.value.source != "environment"
    # A section's own check fails on a key the environment set in it: named, not blamed alone.
    with pytest.raises(ConfigError) as exc:
        load_config("local", environ={"CHIMERA_REWARDS__WEIGHTS__LLM_JUDGE": "-5"})
    (problem,) = exc.value.problems
    assert problem.startswith("rewards: ")
    assert problem.endswith("(the environment sets CHIMERA_REWARDS__WEIGHTS__LLM_JUDGE in it)")
    assert exc.value.source.endswith("local.yaml and the environment")


def test_config_show_and_validate_resolve_a_profile_path_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chimera_core.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "some").mkdir()
    local = Path(resolve_profile_path("local")).read_text()
    # No `profile:` key: the profile's name is the file's stem, which no config dir holds.
    (tmp_path / "some" / "path.yaml").write_text(
        "\n".join(line for line in local.splitlines() if not line.startswith("profile:"))
    )
    for argv in (["config", "validate"], ["config", "show"], ["config", "show", "--json"]):
        assert main([*argv, "--profile", "some/path.yaml"]) == 0, argv
    out = capsys.readouterr().out
    assert "# profile path: some/path.yaml" in out
    monkeypatch.setenv("CHIMERA_PROFILE", "some/path.yaml")
    assert main(["config", "show"]) == 0
    assert "# profile path: some/path.yaml" in capsys.readouterr().out
    assert main(["config", "show", "--profile", "no/such.yaml"]) == 2
    assert "profile file not found: no/such.yaml" in capsys.readouterr().err


def test_an_env_key_in_a_mapping_merges_into_the_profile_and_default_mapping(
    tmp_path: Path,
) -> None:
    base = load_config("local", environ={})
    in_file = yaml.safe_load(resolve_profile_path("local").read_text())
    assert "weights" not in in_file.get("rewards", {})  # the defaults' mapping, then
    config = load_config("local", environ={"CHIMERA_REWARDS__WEIGHTS__HYPOTHESIS_GROUNDING": "0.1"})
    assert config.rewards.weights == {**base.rewards.weights, "hypothesis_grounding": 0.1}
    # A mapping the profile writes merges too; and an explicit dotted override alike.
    nightly = load_config("nightly", environ={})
    config = load_config(
        "nightly",
        environ={"CHIMERA_REWARDS__WEIGHTS__HYPOTHESIS_GROUNDING": "0.1"},
        overrides={"rewards.judge_criteria.novelty": 0.5},
    )
    assert config.rewards.weights == {**nightly.rewards.weights, "hypothesis_grounding": 0.1}
    assert config.rewards.judge_criteria == {**nightly.rewards.judge_criteria, "novelty": 0.5}
    # A whole-mapping value still merges key by key, as a whole section's does.
    config = load_config("local", environ={"CHIMERA_REWARDS__WEIGHTS": "{llm_judge: 0.1}"})
    assert config.rewards.weights == {**base.rewards.weights, "llm_judge": 0.1}
    # A section the profile leaves out: its mapping is the section's default, plus the key.
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "models:\n  m: {served_model: x}\nroles:\n  A: {tier: junior, model: m}\n"
        "rewards: {judge_model: m}\n"
    )
    config = load_config(str(profile), environ={"CHIMERA_REWARDS__WEIGHTS__X": "0.1"})
    assert config.rewards.weights == {**base.rewards.weights, "x": 0.1}
