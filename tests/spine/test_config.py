"""The config schema: every config composes, and bad keys or values fail before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triad.config import TriadConfig, compose, compose_dict, load_params, to_yaml
from triad.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (REPO / "conf" / "trainer").glob("*.yaml"))


def test_default_profile_sets_every_key_the_schema_knows():
    """`dvc exp run` composes conf/ without our defaults: conf must spell out every key."""
    raw = compose_dict([])
    validated = TriadConfig.model_validate(raw).model_dump(mode="json")
    assert raw == validated


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_composes(experiment):
    cfg = compose([f"experiment={experiment}"])
    assert cfg.experiment == experiment


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_config_composes(trainer):
    cfg = compose([f"trainer={trainer}"])
    assert cfg.trainer.accelerator in {"cpu", "gpu", "auto"}


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"model\.translator\.dmodel: unknown key"):
        compose(["+model.translator.dmodel=128"])


def test_override_of_missing_key_says_how_to_add_it():
    with pytest.raises(ConfigError, match="trainer.acelerator"):
        compose(["trainer.acelerator=gpu"])


def test_bad_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError) as info:
        compose(["trainer.precision=fp8"])
    assert "trainer.precision" in str(info.value)
    assert "'bf16-mixed'" in str(info.value) and "'32-true'" in str(info.value)


def test_out_of_range_value_is_named():
    with pytest.raises(ConfigError, match=r"pipeline\.max_parallel: Input should be greater than or equal to 1"):
        compose(["pipeline.max_parallel=0"])


def test_unknown_group_option_lists_the_options():
    with pytest.raises(ConfigError, match=r"(?s)trainer/tpu.*Available options in 'trainer'.*ddp_cpu"):
        compose(["trainer=tpu"])


def test_committed_params_yaml_is_the_composed_default():
    """params.yaml is what `dvc repro` reads; it must not drift from conf/."""
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == compose([]).model_dump(mode="json")


def test_params_round_trip(tmp_path):
    cfg = compose(["model.translator.max_epochs=3"])
    path = tmp_path / "params.yaml"
    path.write_text(to_yaml(cfg))
    assert load_params(path) == cfg


def test_corrupt_params_file_is_a_clear_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "missing.yaml")
