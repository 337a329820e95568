"""Provenance: which code and which data a run used (git commit, DVC data version, this checkout)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml

from triad.config import project_root


def git_commit() -> str:
    """The commit the code ran at, with ``-dirty`` if tracked files had uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_root(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def content_hash(folder: Path) -> str:
    """sha256 over the relative paths and bytes of every file in ``folder`` (order-independent)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def data_version(data_dir: Path) -> str:
    """DVC's hash of a prepared data folder, from ``dvc.lock``; else our own content hash.

    Returns ``md5:<dvc hash>`` when DVC recorded the folder, ``sha256:<hash>`` otherwise (for data
    prepared outside DVC, e.g. by ``triad train`` directly).
    """
    root = project_root()
    lock = root / "dvc.lock"
    try:
        relative = data_dir.resolve().relative_to(root).as_posix()
    except ValueError:
        relative = None
    if relative and lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if out.get("path") == relative and "md5" in out:
                    return f"md5:{out['md5']}"
    return f"sha256:{content_hash(data_dir)}"


def raw_version(stage: str, path: str) -> str | None:
    """DVC's hash (``md5:<hash>``) of dependency ``path`` of ``stage`` as ``dvc.lock`` records it, if it does.

    For a user's own data, the version of the raw files the prepared data came from.
    """
    lock = project_root() / "dvc.lock"
    if not lock.is_file():
        return None
    stage_lock = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage, {})
    for dep in stage_lock.get("deps", []):
        if dep.get("path") == path and "md5" in dep:
            return f"md5:{dep['md5']}"
    return None


def project_id() -> str:
    """This checkout on this machine (``host:path``): tells a project's runs from another's on a shared server."""
    import socket

    return f"{socket.gethostname()}:{project_root()}"
