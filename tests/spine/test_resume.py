"""A training run killed mid-epoch resumes from its last checkpoint, continues the same MLflow run, and
ends with weights bit-identical to a run that was never killed (``triad.resumable``)."""

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
    return subprocess.Popen(
        [str(BIN / "triad"), "train", "translator", "--no-register", *overrides],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _weights(project: Path) -> dict:
    import torch

    return torch.load(project / "artifacts/translator/train/model.pt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]


def test_killed_run_resumes_mid_epoch_to_the_same_weights(project):
    import torch

    overrides = [o for o in tiny("translator") if not o.startswith("model.translator.max_epochs")]
    overrides += ["model.translator.max_epochs=3", "trainer.checkpoint_every_n_steps=2"]
    state = project / ".triad" / "translator"

    uninterrupted = _train(project, overrides)
    output, _ = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, output
    expected = _weights(project)
    (project / "artifacts/translator/train/model.pt").unlink()

    first = _train(project, overrides)
    deadline = time.time() + 240
    while not list(state.glob("*/last.ckpt")):
        assert first.poll() is None, f"training ended before its first checkpoint:\n{first.stdout.read()}"
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # a crash: no clean-up code runs
    first.wait()
    (checkpoint_dir,) = [p.parent for p in state.glob("*/last.ckpt")]
    run_before = json.loads((checkpoint_dir / "run.json").read_text())["run_id"]
    assert not (project / "artifacts/translator/train/model.pt").exists()
    saved = torch.load(checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)
    (position,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert position["epoch"] == saved["epoch"] and position["batches"] > 0, position  # mid-epoch, past its start

    second = _train(project, overrides)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    assert "resuming translator training from" in output
    assert "not resumable" not in output  # Lightning's warning for a loader that restarts the epoch
    record = json.loads((state / "runs" / f"{checkpoint_dir.name}.json").read_text())
    assert record["resumed_from"] and record["run_id"] == run_before
    summary = json.loads((project / "artifacts/translator/train/run.json").read_text())
    assert summary["epochs"] == 3 and "run_id" not in summary  # the DVC output holds no run ids
    assert not checkpoint_dir.exists()  # finished: the resume state is cleaned up

    resumed = _weights(project)
    assert resumed.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(expected[name], resumed[name])]
    assert different == [], f"{len(different)} tensors differ after the resume, e.g. {different[:3]}"


class _Crash(Exception):
    pass


def _fit(cfg, head, checkpoint_dir: Path, resume: Path | None = None, crash_at: int | None = None) -> dict:
    """Train with the spine's Trainer; ``crash_at``: raise when step ``crash_at`` starts (after its checkpoints)."""
    import lightning as L

    from triad.train import build_trainer

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = head.datamodule(head.dir("data"))
    module = head.module(datamodule)
    trainer = build_trainer(cfg, head.name, checkpoint_dir, None)

    class Crash(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == crash_at:
                raise _Crash

    trainer.callbacks.append(Crash())
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    except _Crash:
        pass
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_an_interrupted_diffusion_run_resumes_to_the_same_weights_and_ema(project, tmp_path):
    """The diffusion head keeps an EMA copy and draws noise, timesteps and label dropout every step:
    interrupted after step 4 of 10 (mid-epoch) and resumed, every tensor, EMA included, equals an
    uninterrupted run's. (The EMA used to be updated after the step's checkpoint was written.)"""
    import torch

    from triad.config import compose
    from triad.heads import get_head
    from triad.prepare import prepare

    cfg = compose(
        tiny(
            "diffusion",
            extra=("model.diffusion.max_steps=10", "trainer.checkpoint_every_n_steps=4", "trainer.limit_val_batches=1"),
        )
    )
    prepare(cfg, "diffusion")
    head = get_head("diffusion", cfg)
    expected = _fit(cfg, head, tmp_path / "uninterrupted")
    _fit(cfg, head, tmp_path / "interrupted", crash_at=4)
    saved = torch.load(tmp_path / "interrupted" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 4
    resumed = _fit(cfg, head, tmp_path / "resumed", resume=tmp_path / "interrupted" / "last.ckpt")
    assert any(name.startswith("ema.") for name in expected)
    different = [name for name in expected if not torch.equal(expected[name], resumed[name])]
    assert different == [], f"{len(different)} tensors differ after the resume, e.g. {different[:3]}"
