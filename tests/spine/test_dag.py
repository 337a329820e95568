"""The DAG the flow runs is the one in dvc.yaml."""

from __future__ import annotations

import ast
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
    assert set(next(s for s in stages if s.name == "evaluate_diffusion").upstream) >= {
        "train_diffusion",
        "judge_diffusion",
    }


def test_every_stage_belongs_to_a_head_and_calls_triad():
    for stage in load_stages(REPO):
        assert stage.head in {"translator", "diffusion", "transfer", "spread"}
        assert stage.cmd.startswith("triad stage ") and stage.cmd.endswith(stage.head)


def test_head_selection_keeps_only_that_heads_stages():
    names = [s.name for s in load_stages(REPO, heads=["translator"])]
    assert names == ["prepare_translator", "train_translator", "lm_translator", "evaluate_translator"]


def test_a_cycle_is_reported(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "a": {"cmd": "echo a", "deps": ["b.txt"], "outs": ["a.txt"]},
                    "b": {"cmd": "echo b", "deps": ["a.txt"], "outs": ["b.txt"]},
                }
            }
        )
    )
    with pytest.raises(ConfigError, match="cycle"):
        load_stages(tmp_path)


def test_dvc_lock_is_not_git_ignored():
    """DVC refuses every command once dvc.lock exists and git ignores it; a fresh clone's second stage would fail."""
    import subprocess

    ignored = subprocess.run(["git", "check-ignore", "-q", "dvc.lock"], cwd=REPO).returncode == 0
    assert not ignored, "remove dvc.lock from .gitignore: DVC stops with \"'dvc.lock' is git-ignored\""


# Where each kind of stage enters its head's code; the stage must list every module of the head that
# those entry modules import, directly or through each other, or an edit there would leave it stale.
ENTRY_MODULES = {
    "prepare": ["data.py"],
    "train": ["module.py", "data.py"],
    "evaluate": ["evaluate.py", "pyfunc.py"],
    "evidence": ["evidence.py"],
    "pretrain": ["pretrain.py"],
    "judge": ["judge.py"],
    "lm": ["language_model.py"],
}


def _head_imports(path: Path, head: str) -> set[Path]:
    """``path`` and every module of ``triad.heads.<head>`` it imports, transitively."""
    seen, todo = set(), [path]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for node in ast.walk(ast.parse(module.read_text())):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.startswith(f"triad.heads.{head}."):
                    todo.append(REPO / "src" / Path(*name.split(".")).with_suffix(".py"))
    return seen


def test_each_stage_depends_on_the_head_code_it_runs():
    for stage in load_stages(REPO):
        step = stage.name.removesuffix(f"_{stage.head}")
        assert step in ENTRY_MODULES, f"stage {stage.name}: add its entry modules to ENTRY_MODULES"
        head_dir = REPO / "src/triad/heads" / stage.head
        code = set().union(*(_head_imports(head_dir / entry, stage.head) for entry in ENTRY_MODULES[step]))
        listed = {REPO / dep for dep in stage.deps}
        missing = sorted(str(m.relative_to(REPO)) for m in code if not any(m == d or d in m.parents for d in listed))
        assert not missing, f"dvc.yaml stage {stage.name} runs {missing} but does not list them in its deps"


@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_status_and_commit_in_process_and_through_the_cli_agree(tmp_path, monkeypatch, where):
    """From the project's root the flow asks DVC's API in process; from elsewhere, the ``dvc`` CLI. Same answers."""
    from tests.conftest import make_project
    from triad import dag

    root = make_project(tmp_path / "project")
    (root / "dvc.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
    )
    (root / "in.txt").write_text("one\n")
    monkeypatch.chdir(root if where == "root" else tmp_path)
    assert dag._here(root) == (where == "root")
    assert dag.changes(root, "copy") == [
        {"changed deps": {"in.txt": "modified"}},
        {"changed outs": {"out.txt": "deleted"}},
    ]
    (root / "out.txt").write_text("one\n")
    dag.commit(root, "copy")
    assert dag.changes(root, "copy") == []
    assert "out.txt" in (root / "dvc.lock").read_text()
    (root / "in.txt").write_text("two\n")
    assert dag.changes(root, "copy") == [{"changed deps": {"in.txt": "modified"}}]
    with pytest.raises(RuntimeError, match="dvc commit nowhere failed:\n.*'nowhere' does not exist"):
        dag.commit(root, "nowhere")
