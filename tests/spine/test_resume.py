"""A killed training run resumes from its last checkpoint and continues the same MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny import tiny

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _train(project: Path, overrides: list[str]) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "triad"), "train", "translator", "--no-register", *overrides],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_killed_run_resumes_from_last_checkpoint(project):
    overrides = [o for o in tiny("translator") if not o.startswith("model.translator.max_epochs")]
    overrides += ["model.translator.max_epochs=3", "trainer.checkpoint_every_n_steps=2"]
    state = project / ".triad" / "translator"

    first = _train(project, overrides)
    deadline = time.time() + 240
    while not list(state.glob("*/last.ckpt")):
        assert first.poll() is None, f"training ended before its first checkpoint:\n{first.stdout.read()}"
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # a crash: no clean-up code runs
    first.wait()
    (checkpoint_dir,) = [p.parent for p in state.glob("*/last.ckpt")]
    run_before = json.loads((checkpoint_dir / "run.json").read_text())["run_id"]
    assert not (project / "artifacts/translator/train/model.pt").exists()

    second = _train(project, overrides)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    assert "resuming translator training from" in output
    summary = json.loads((project / "artifacts/translator/train/run.json").read_text())
    assert summary["resumed_from"] and summary["run_id"] == run_before
    assert summary["epochs"] == 3
    assert not checkpoint_dir.exists()  # finished: the resume state is cleaned up
