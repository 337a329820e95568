"""The config schema: every config composes, and bad keys or values fail before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triad.config import TriadConfig, compose, compose_dict, load_params, to_yaml, validate
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


def _schema_classes(model: type, seen: set | None = None) -> set[type]:
    """``model`` and every pydantic section class reachable from its fields."""
    import typing

    from pydantic import BaseModel

    seen = set() if seen is None else seen
    if model in seen:
        return seen
    seen.add(model)

    def walk(annotation) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _schema_classes(annotation, seen)
        for arg in typing.get_args(annotation):
            walk(arg)

    for field in model.model_fields.values():
        walk(field.annotation)
    return seen


def test_the_yaml_is_the_one_source_of_every_value():
    """No schema field has a default: a value lives in conf/ only, so code and yaml cannot disagree."""
    from triad.config import schema

    classes = _schema_classes(schema())
    assert len(classes) > 20  # every head's sections and sub-sections, not just the top
    with_defaults = sorted(
        f"{cls.__module__}.{cls.__name__}.{name}"
        for cls in classes
        for name, field in cls.model_fields.items()
        if not field.is_required()
    )
    assert with_defaults == []


def test_a_missing_key_is_named():
    raw = compose_dict([])
    del raw["model"][next(iter(raw["model"]))]["lr"]
    with pytest.raises(ConfigError, match=r"model\.\w+\.lr: Field required"):
        validate(raw)


def test_spine_code_names_no_head():
    """Outside the head packages, code reaches heads through the registry only (triad.heads)."""
    import re

    from triad.heads import BUILTIN

    sources = [
        p for p in (REPO / "src" / "triad").rglob("*.py") if "heads" not in p.relative_to(REPO / "src" / "triad").parts
    ]
    sources += list((REPO / "flows").rglob("*.py"))
    pattern = re.compile(r"\b(" + "|".join(BUILTIN) + r")\b", re.IGNORECASE)
    named = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in sources
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert len(sources) > 20 and named == []
