"""Real multi-process training on CPU (gloo): DDP matches one process, across processes and nodes.

The set-up makes equality mathematically expected: the transfer head on 20 labelled digits, full
batch (one process with batch 20, or two with batch 10 each, whose gradients DDP averages), no
dropout, a frozen backbone (batch norm included), deterministic kernels. Every optimiser step then sees the same
gradient up to float summation order, so the final weights agree to a tight tolerance.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import enter_project, make_project
from tests.tiny import tiny
from triad.config import compose, write_params
from triad.prepare import prepare
from triad.train import train

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
N_TRAIN = 20  # tiny transfer: 2 labelled digits per class, 10 classes

# A linear probe: the backbone (batch norm included) is frozen from the start, the classifier trains.
# (Gradual unfreezing would not do: DDP synchronises only the parameters trainable when it wraps the model.)
FULL_BATCH = [o for o in tiny("transfer") if not o.startswith("model.transfer.max_epochs")] + [
    "model.transfer.dropout=0.0",
    "model.transfer.strategy=linear_probe",
    "model.transfer.max_epochs=3",
    "trainer.limit_val_batches=1",
    "trainer.checkpoint_every_n_steps=1",
]


def _weights(project: Path) -> dict[str, torch.Tensor]:
    return torch.load(project / "artifacts/transfer/train/model.pt", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    """One process on the whole batch (three steps), in a project of its own: the final weights."""
    tmp = tmp_path_factory.mktemp("reference")
    root = make_project(tmp / "project")
    with pytest.MonkeyPatch.context() as monkeypatch:
        enter_project(root, monkeypatch, tmp / "cache")
        cfg = compose([*FULL_BATCH, f"model.transfer.batch_size={N_TRAIN}"])
        prepare(cfg, "transfer")
        summary = train(cfg, "transfer")
        assert summary["global_step"] == 3  # one full-batch step per epoch
        return _weights(root)


def _assert_same_weights(reference: dict, result: dict) -> None:
    assert result.keys() == reference.keys()
    worst = max((result[k].double() - reference[k].double()).abs().max().item() for k in reference)
    assert worst < 1e-4, f"largest weight difference {worst}"


def test_two_processes_match_one(project, reference):
    """ddp_spawn: two gloo processes on one machine, batch 10 each, end where one process with batch 20 does."""
    cfg = compose([*FULL_BATCH, "trainer=ddp_cpu", f"model.transfer.batch_size={N_TRAIN // 2}"])
    prepare(cfg, "transfer")
    summary = train(cfg, "transfer")
    assert summary["global_step"] == 3
    _assert_same_weights(reference, _weights(project))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_torchrun_rendezvous_matches_one_process(project, reference):
    """Two torchrun "nodes" on localhost (one process each) run `triad train`: rank zero alone prepares,
    runs the evidence step, logs one MLflow run and evaluates; the weights match one process."""
    port = _free_port()
    overrides = [*FULL_BATCH, "trainer=ddp_multinode_cpu", f"model.transfer.batch_size={N_TRAIN // 2}"]
    nodes = [
        subprocess.Popen(
            [
                str(BIN / "torchrun"),
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "-m",
                "triad.cli",
                "train",
                "transfer",
                "--no-register",
                *overrides,
            ],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=400)[0] for node in nodes]
    for rank, (node, output) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"node {rank}:\n{output[-3000:]}"
    assert "test_accuracy:" in outputs[0] and "test_accuracy:" not in outputs[1]  # only rank zero evaluates
    _assert_same_weights(reference, _weights(project))

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    names = sorted(mlflow.search_runs(experiment_names=["triad-transfer"])["tags.mlflow.runName"])
    summary = json.loads((project / "artifacts/transfer/train/run.json").read_text())
    # ONE run for the two-node training (rank zero's); rank zero alone ran the pretraining and evidence steps
    assert names == sorted([f"transfer-{summary['fingerprint'][:8]}", "transfer-evidence", "transfer-pretrain"])


def test_checkpoint_from_two_processes_resumes_on_one(project):
    """Killed while training on two processes, the run resumes on one from the same checkpoint folder
    and continues the same MLflow run: devices and strategy are not part of the fingerprint."""
    overrides = [*FULL_BATCH, "model.transfer.max_epochs=4", f"model.transfer.batch_size={N_TRAIN // 2}"]
    cfg = compose(overrides)
    prepare(cfg, "transfer")
    write_params(compose([*overrides, "trainer=ddp_cpu"]), project / "params.yaml")
    first = subprocess.Popen(
        [str(BIN / "triad"), "stage", "train", "transfer"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    state = project / ".triad/transfer"
    deadline = time.time() + 300
    while not list(state.glob("*/step*.ckpt")):
        assert first.poll() is None, f"training ended before its first checkpoint:\n{first.stdout.read()[-3000:]}"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    time.sleep(1.0)  # let last.ckpt, written right after step<N>.ckpt, land
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    (checkpoint_dir,) = [p.parent for p in state.glob("*/last.ckpt")]
    saved = torch.load(checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)
    run_before = json.loads((checkpoint_dir / "run.json").read_text())["run_id"]
    assert saved["global_step"] < 4, "the two-process run finished before it was killed"

    summary = train(cfg, "transfer")  # one process (trainer=cpu), same fingerprint
    assert summary["resumed_from"] == str(checkpoint_dir / "last.ckpt")
    assert summary["fingerprint"] == checkpoint_dir.name
    assert summary["run_id"] == run_before
    assert summary["epochs"] == 4
    assert summary["global_step"] > saved["global_step"]
    assert not checkpoint_dir.exists()
