"""Which process am I? Rank helpers for runs launched by torchrun, SLURM or Lightning itself.

Lightning's strategies (DDP, FSDP) do the distribution; the launcher starts one process per device:

- ``torchrun`` sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` (Lightning's TorchElasticEnvironment);
- ``srun`` sets ``SLURM_PROCID``/``SLURM_LOCALID``/``SLURM_NTASKS`` (Lightning's SLURMEnvironment);
- Lightning's own launcher re-runs the command line with ``LOCAL_RANK``/``NODE_RANK`` set
  (``strategy: ddp`` without an external launcher), or forks workers (``ddp_spawn``: the parent is rank 0).

Every process runs ``triad train``; these helpers let only the global rank zero touch shared state
(prepare data, log to MLflow, write artifacts, evaluate and register) before the Trainer exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from triad.errors import DataError


def rank_description() -> str:
    """The launcher's rank variables of this process, for messages (``RANK=1``, ``SLURM_PROCID=3``, ...)."""
    names = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")
    found = [f"{name}={os.environ[name]}" for name in names if name in os.environ]
    return ", ".join(found) or "not launched distributed"


def is_global_zero() -> bool:
    """Whether this process is the global rank zero (also true when not launched distributed)."""
    if "RANK" in os.environ:  # torchrun / torch elastic
        return int(os.environ["RANK"]) == 0
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:  # srun, one task per device
        return int(os.environ["SLURM_PROCID"]) == 0
    # Lightning's own launcher (strategy ddp without torchrun/srun) knows only the node and local rank.
    return int(os.environ.get("NODE_RANK", "0")) == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


def wait_for_file(path: Path, what: str, timeout_s: float = 3600.0, poll_s: float = 1.0) -> None:
    """Block until ``path`` exists (written by rank zero); a clear error after ``timeout_s``.

    Used by ranks other than zero while rank zero prepares the data they are about to read.
    """
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise DataError(
                f"the process with {rank_description()} waited {timeout_s:.0f} s for {what} ({path}) from rank 0. "
                "Nodes must share the project folder; otherwise prepare the data on every node first "
                "(`triad stage prepare` or `dvc pull`)."
            )
        time.sleep(poll_s)
