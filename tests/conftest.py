"""Shared fixtures: a throwaway copy of the project for tests that run DVC, Prefect and MLflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
os.environ.setdefault("TRIAD_ROOT", str(REPO))


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)


def make_project(root: Path, extra: tuple[str, ...] = ()) -> Path:
    """Create ``root`` as a git + DVC project holding this repo's code, conf, dvc.yaml and ``extra`` files."""
    root.mkdir()
    for name in ("conf", "src", "flows", "dvc.yaml", *extra):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, root / name)
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    _run([str(BIN / "dvc"), "config", "core.analytics", "false"], root)
    return root


def enter_project(root: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """Make ``root`` the cwd and TRIAD_ROOT, with its own MLflow backend and download cache."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("TRIAD_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TRIAD_CACHE_DIR", str(cache))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A fresh git + DVC project holding this repo's code, conf and dvc.yaml; the cwd and TRIAD_ROOT.

    Its MLflow backend is its own SQLite file, so tests never touch the developer's runs.
    """
    root = make_project(tmp_path / "project")
    enter_project(root, monkeypatch, tmp_path / "cache")
    return root


@pytest.fixture(scope="session")
def harness():
    """One temporary Prefect server for every test that runs a flow in this process (about 10 s to start).

    The flows' runs share its database; no test counts Prefect's flow runs, each reads back only its own.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def sqlite_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
