"""A fresh project with the tiny line head (tests/line_head/) added as docs/adding-a-head.md says.

Used by the test of adding a head, and by tests that need a real pipeline that runs in seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DATA_YAML = "points: 200\nslope: 2.0\nintercept: -1.0\nnoise: 0.1\n"
MODEL_YAML = "max_epochs: 8\nmax_steps: -1\nbatch_size: 16\nlr: 0.3\nweight_decay: 0.0\n"
STAGES = """
  prepare_line:
    cmd: triad stage prepare line
    meta: {head: line}
    deps: [line_head/config.py, line_head/head.py]
    params: [seed, data.line]
    outs: [data/line]
  train_line:
    cmd: triad stage train line
    meta: {head: line}
    deps: [data/line, line_head/config.py, line_head/head.py]
    params: [seed, trainer, data.line, model.line]
    outs: [artifacts/line/train]
  evaluate_line:
    cmd: triad stage evaluate line
    meta: {head: line}
    deps: [artifacts/line/train, data/line, line_head/head.py]
    params: [seed, model.line]
    outs:
      - reports/line/registry.json: {cache: false}
    metrics:
      - reports/line/metrics.json: {cache: false}
    plots:
      - reports/line/plots: {cache: false}
"""


def add_line_head(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The four steps of docs/adding-a-head.md, for a head that lives outside triad."""
    # 1. The head's package (config.py, head.py, cli.py), importable by the stages' processes.
    shutil.copytree(REPO / "tests" / "line_head", project / "line_head", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(project))
    # 2. Its yaml groups, and their place in the default list.
    for kind, text in (("data", DATA_YAML), ("model", MODEL_YAML)):
        (project / "conf" / kind / "line").mkdir(parents=True)
        (project / "conf" / kind / "line" / "default.yaml").write_text(text)
    config = project / "conf" / "config.yaml"
    config.write_text(
        config.read_text().replace(
            "  - experiment: null", "  - data/line: default\n  - model/line: default\n  - experiment: null"
        )
    )
    # 3. Its stages in dvc.yaml.
    with (project / "dvc.yaml").open("a") as dvc_yaml:
        dvc_yaml.write(STAGES)
    # 4. The registry line: for a head outside triad, $TRIAD_HEADS (a built-in head is a line of BUILTIN).
    monkeypatch.setenv("TRIAD_HEADS", "line=line_head")
