"""The pipeline's DAG, read from ``dvc.yaml``: the one definition that DVC and Prefect both run.

``dvc repro`` runs ``dvc.yaml`` itself. The Prefect flow (``flows/pipeline.py``) reads the same
stages here, orders them by their ``deps`` and ``outs``, and for each stage asks DVC whether it is
up to date (``dvc status``), runs the stage's own ``cmd`` if not, and records the result with
``dvc commit`` so that the next ``dvc repro`` or flow run sees it as done. With a DVC remote
(``pipeline.remote.url``) the flow also pulls a stage's missing outputs first and pushes them after.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from triad.errors import ConfigError

# DVC takes a repository lock; the flow's threads share it through this lock instead of failing.
_DVC_LOCK = threading.Lock()


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    head: str | None
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    upstream: tuple[str, ...] = field(default=())


def _paths(entries) -> list[str]:
    """Paths of a dvc.yaml ``deps``/``outs``/``metrics``/``plots`` list (strings or one-key dicts)."""
    paths = []
    for entry in entries or []:
        paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return [str(PurePosixPath(p)) for p in paths]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def load_stages(root: Path, heads: list[str] | None = None) -> list[Stage]:
    """Stages of ``<root>/dvc.yaml`` in a topological order, optionally only those of ``heads``.

    A stage's head is its ``meta.head``; stages without one belong to every selection.
    """
    dvc_file = root / "dvc.yaml"
    if not dvc_file.is_file():
        raise ConfigError(f"no dvc.yaml in {root}")
    raw = yaml.safe_load(dvc_file.read_text()).get("stages", {})
    produced: dict[str, str] = {}
    parsed = {}
    for name, spec in raw.items():
        outs = _paths(spec.get("outs")) + _paths(spec.get("metrics")) + _paths(spec.get("plots"))
        for out in outs:
            produced[out] = name
        cmd = spec["cmd"] if isinstance(spec["cmd"], str) else " && ".join(spec["cmd"])
        parsed[name] = (cmd, (spec.get("meta") or {}).get("head"), tuple(_paths(spec.get("deps"))), tuple(outs))
    stages: dict[str, Stage] = {}
    for name, (cmd, head, deps, outs) in parsed.items():
        upstream = sorted(
            {
                producer
                for dep in deps
                for out, producer in produced.items()
                if (_under(dep, out) or _under(out, dep)) and producer != name
            }
        )
        stages[name] = Stage(name, cmd, head, deps, outs, tuple(upstream))

    order: list[Stage] = []
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in trail:
            raise ConfigError(f"dvc.yaml has a cycle: {' -> '.join(trail + (name,))}")
        for up in stages[name].upstream:
            visit(up, trail + (name,))
        done.add(name)
        order.append(stages[name])

    for name in stages:
        visit(name, ())
    if heads is not None:
        order = [s for s in order if s.head is None or s.head in heads]
    return order


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    dvc = Path(sys.executable).with_name("dvc")
    command = [str(dvc) if dvc.exists() else "dvc", *args]
    with _DVC_LOCK:
        return subprocess.run(command, cwd=root, capture_output=True, text=True)


def _in_process(root: Path, what: str, action: Callable):
    """``action(repo)`` on the DVC repository at ``root``, in this process, whose working directory it is.

    The flow asks DVC twice per stage (status, then commit). The CLI paid about 1 s of start-up each time
    (``dvc status`` 0.8 s and ``dvc commit`` 1.3 s against 0.2 s and 0.6 s in process, on a tiny stage on
    2 busy cores); the API pays its import once. DVC's own log lines stay out of the run's log, as the
    CLI's captured output did; a failure raises with DVC's message.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    logging.getLogger("dvc").setLevel(logging.ERROR)
    with _DVC_LOCK:
        try:
            with Repo(str(root)) as repo:
                return action(repo)
        except DvcException as exc:
            raise RuntimeError(f"dvc {what} failed:\n{exc}") from exc


def _here(root: Path) -> bool:
    """Whether this process works in ``root``: DVC's API resolves stages and writes from the working directory."""
    return Path.cwd().resolve() == Path(root).resolve()


def changes(root: Path, stage: str) -> list:
    """What DVC says changed for ``stage`` (empty when it is up to date): ``dvc status``'s entries."""
    if _here(root):
        return _in_process(root, f"status {stage}", lambda repo: repo.status(targets=[stage])).get(stage, [])
    result = _dvc(root, "status", "--json", stage)
    if result.returncode != 0:
        raise RuntimeError(f"dvc status {stage} failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout or "{}").get(stage, [])


def commit(root: Path, stage: str) -> None:
    """Record ``stage``'s deps and outs in dvc.lock and its outs in the DVC cache (``dvc commit --force``)."""
    if _here(root):
        _in_process(root, f"commit {stage}", lambda repo: repo.commit(stage, force=True))
        return
    result = _dvc(root, "commit", "--force", stage)
    if result.returncode != 0:
        raise RuntimeError(f"dvc commit {stage} failed:\n{result.stderr.strip()}")


def use_remote(root: Path, name: str, url: str) -> None:
    """Register ``url`` as the DVC remote ``name`` in ``.dvc/config.local`` (this machine only; idempotent).

    A plain path is taken relative to the project root.
    """
    if "://" not in url:
        url = str((root / Path(url).expanduser()).resolve())
    result = _dvc(root, "remote", "add", "--local", "--force", name, url)
    if result.returncode != 0:
        raise ConfigError(f"cannot use {url!r} as a DVC remote (pipeline.remote.url):\n{result.stderr.strip()}")


def pull_missing(root: Path, stage: Stage, remote: str) -> bool:
    """Fetch ``stage``'s outputs recorded in dvc.lock from ``remote`` when some are missing here.

    Returns whether a pull was attempted. Outputs the remote lacks stay missing (the stage then runs).
    """
    if all((root / out).exists() for out in stage.outs):
        return False
    result = _dvc(root, "pull", "--allow-missing", "--remote", remote, stage.name)
    if result.returncode != 0:
        raise RuntimeError(f"dvc pull {stage.name} from remote {remote!r} failed:\n{result.stderr.strip()}")
    return True


def push(root: Path, stage: Stage, remote: str) -> None:
    """Upload ``stage``'s cached outputs to ``remote`` so other machines can pull them."""
    result = _dvc(root, "push", "--remote", remote, stage.name)
    if result.returncode != 0:
        raise RuntimeError(f"dvc push {stage.name} to remote {remote!r} failed:\n{result.stderr.strip()}")


class StageFailed(RuntimeError):
    """A stage's command exited non-zero. ``output_tail``: the last lines it wrote to stderr (its error),
    which a failed run's alert carries."""

    def __init__(self, stage: str, returncode: int, output_tail: list[str] | None = None):
        super().__init__(f"stage {stage} failed with exit code {returncode}")
        self.stage, self.returncode, self.output_tail = stage, returncode, list(output_tail or [])

    def __reduce__(self):  # an exception pickles its args alone; keep every field through Prefect's results
        return (StageFailed, (self.stage, self.returncode, self.output_tail))

    @property
    def transient(self) -> bool:
        """Worth a retry: killed by a signal (a resumable crash) or a transient error (exit 75)."""
        return self.returncode < 0 or self.returncode == 75


TAIL_BYTES = 16384  # how much of a stage's stderr is kept for its error (the rest passes through only)
TAIL_LINES = 20


def run(root: Path, stage: Stage, env: dict[str, str] | None = None) -> None:
    """Run the stage's ``cmd`` from ``dvc.yaml`` with the project's virtualenv on the PATH.

    Its stderr passes through to ours as it comes, and its last lines are kept for ``StageFailed``.
    On a terminal the stage writes to a pseudo-terminal, so it still sees a terminal (and shows its
    progress bars); otherwise to a pipe.
    """
    argv = shlex.split(stage.cmd) if "&&" not in stage.cmd else ["bash", "-c", stage.cmd]
    returncode, tail = run_keeping_tail(argv, root, stage_environment(env))
    if returncode != 0:
        raise StageFailed(stage.name, returncode, tail)


def stage_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """A stage's environment: ours, plus ``env``, with the project's virtualenv first on the PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **(env or {}), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def run_keeping_tail(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run ``argv``, passing its stderr through to ours; return its exit code and last stderr lines."""
    terminal = sys.stderr.isatty()
    if terminal:
        import pty

        reader, writer = pty.openpty()
    else:
        reader, writer = os.pipe()
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stderr=writer)
    finally:
        os.close(writer)
    kept = bytearray()
    try:
        while True:
            try:
                chunk = os.read(reader, 65536)
            except OSError:  # a pseudo-terminal reads EIO once the child has closed it
                break
            if not chunk:
                break
            _write_through(chunk)
            kept = (kept + chunk)[-TAIL_BYTES:]
    finally:
        os.close(reader)
    return process.wait(), last_lines(kept.decode(errors="replace"))


def _write_through(chunk: bytes) -> None:
    target = getattr(sys.stderr, "buffer", None)
    if target is not None:
        target.write(chunk)
    else:  # a replaced sys.stderr (pytest's capture) takes text
        sys.stderr.write(chunk.decode(errors="replace"))
    sys.stderr.flush()


def last_lines(text: str, lines: int = TAIL_LINES) -> list[str]:
    """The last non-blank ``lines`` lines of a stream, each as a terminal would leave it (a progress bar's
    carriage-return frames reduced to the last one)."""
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return [line for line in shown if line.strip()][-lines:]


def describe_changes(changed: list) -> str:
    """DVC's status of a stage in a line: ``deps modified: a.py, b.py and 9 more; outs deleted: data/x``."""
    parts = []
    for entry in changed:
        if not isinstance(entry, dict):
            parts.append(str(entry))
            continue
        for kind, paths in entry.items():
            if not isinstance(paths, dict):
                parts.append(f"{kind}: {paths}")
                continue
            by_status: dict[str, list[str]] = {}
            for path, status in paths.items():
                by_status.setdefault(str(status), []).append(path)
            for status, names in by_status.items():
                more = f" and {len(names) - 2} more" if len(names) > 2 else ""
                parts.append(f"{kind.removeprefix('changed ')} {status}: {', '.join(names[:2])}{more}")
    return "; ".join(parts)


def run_if_changed(
    root: Path,
    stage: Stage,
    logger: logging.Logger | logging.LoggerAdapter,
    remote: str | None = None,
    env: dict[str, str] | None = None,
    force: str | None = None,
    stage_env: Callable[[], dict[str, str]] | None = None,
) -> dict:
    """One stage as the flow runs it: run it only if DVC says it changed (or ``force`` gives a reason
    to run it anyway), then record it in dvc.lock.

    With a DVC ``remote``: missing outputs are pulled first (so data prepared on another machine is
    not prepared again) and the stage's outputs are pushed after it ran.
    ``stage_env``, called only when the stage runs, adds to ``env`` (the flow's warm server, ``triad.warm``).
    Returns ``{"stage", "head", "status": "ran"|"skipped", "seconds"?}``.
    """
    if remote and pull_missing(root, stage, remote):
        logger.info("%s: pulled its missing outputs from DVC remote %s", stage.name, remote)
    changed = changes(root, stage.name) or ([force] if force else [])
    if not changed:
        logger.info("%s is unchanged: skipped", stage.name)
        return {"stage": stage.name, "head": stage.head, "status": "skipped"}
    logger.info("%s changed (%s): running `%s`", stage.name, describe_changes(changed), stage.cmd)
    started = time.perf_counter()
    run(root, stage, env={**(env or {}), **(stage_env() if stage_env else {})})
    commit(root, stage.name)
    if remote:
        push(root, stage, remote)
    seconds = time.perf_counter() - started
    logger.info("%s done in %.1fs", stage.name, seconds)
    return {"stage": stage.name, "head": stage.head, "status": "ran", "seconds": round(seconds, 1)}
