"""The DAG the flow runs is the one in dvc.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triad.dag import load_stages
from triad.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_stages_follow_their_dependencies():
    stages = load_stages(REPO)
    position = {s.name: i for i, s in enumerate(stages)}
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(position) == set(raw)
    for stage in stages:
        for up in stage.upstream:
            assert position[up] < position[stage.name], f"{up} must run before {stage.name}"
    train = next(s for s in stages if s.name == "train_translator")
    assert train.upstream == ("prepare_translator",)
    assert set(next(s for s in stages if s.name == "evaluate_diffusion").upstream) >= {"train_diffusion", "judge_diffusion"}


def test_every_stage_belongs_to_a_head_and_calls_triad():
    for stage in load_stages(REPO):
        assert stage.head in {"translator", "diffusion", "transfer", "spread"}
        assert stage.cmd.startswith("triad stage ") and stage.cmd.endswith(stage.head)


def test_head_selection_keeps_only_that_heads_stages():
    names = [s.name for s in load_stages(REPO, heads=["translator"])]
    assert names == ["prepare_translator", "train_translator", "lm_translator", "evaluate_translator"]


def test_a_cycle_is_reported(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "a": {"cmd": "echo a", "deps": ["b.txt"], "outs": ["a.txt"]},
        "b": {"cmd": "echo b", "deps": ["a.txt"], "outs": ["b.txt"]},
    }}))
    with pytest.raises(ConfigError, match="cycle"):
        load_stages(tmp_path)


def test_dvc_lock_is_not_git_ignored():
    """DVC refuses every command once dvc.lock exists and git ignores it; a fresh clone's second stage would fail."""
    import subprocess

    ignored = subprocess.run(["git", "check-ignore", "-q", "dvc.lock"], cwd=REPO).returncode == 0
    assert not ignored, "remove dvc.lock from .gitignore: DVC stops with \"'dvc.lock' is git-ignored\""
