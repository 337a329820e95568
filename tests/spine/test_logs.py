"""Quiet, useful logs: a pipeline's output redirected to a file holds no progress-bar frames and no MLflow warnings.

Before: one default run's 104 KB log was mostly tqdm frames joined by carriage returns, and every
evaluation printed MLflow's warnings about ``predict`` type hints and cloudpickle.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow.pyfunc
import pytest

from tests.line_project import add_line_head
from triad.heads import head_names

BIN = Path(sys.executable).parent
EPOCH_LINE = re.compile(
    r"INFO triad\.train: line epoch (\d+)/8  step (\d+)  train_loss \S+  val_loss \S+  \d+\.\ds$", re.MULTILINE
)


def _stage(project: Path, log: Path, *args: str) -> None:
    with open(log, "ab") as out:  # a file, not a terminal: what a redirected or scheduled run writes to
        done = subprocess.run(
            [str(BIN / "triad"), *args],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=600,
        )
    assert done.returncode == 0, log.read_text()[-4000:]


@pytest.mark.slow
def test_a_training_logged_to_a_file_writes_one_line_per_epoch_and_no_progress_frames(project, tmp_path, monkeypatch):
    add_line_head(project, monkeypatch)  # eight epochs of ten steps, in seconds
    log = tmp_path / "stages.log"
    _stage(project, log, "config", "--write-params")
    for step in ("prepare", "train", "evaluate"):
        _stage(project, log, "stage", step, "line")
    text = log.read_text()
    assert "\r" not in text  # no progress-bar refreshes
    epochs = [(int(epoch), int(step)) for epoch, step in EPOCH_LINE.findall(text)]
    assert epochs == [(epoch, 10 * epoch) for epoch in range(1, 9)], text[-4000:]
    assert "CloudPickle" not in text  # the model is logged as code (triad.model_code), not pickled
    assert "Traceback" not in text
    assert "Warning" not in text and "site-packages" not in text, text[-4000:]  # no Python warnings at all
    assert text.count("GPU available") == 1  # Lightning's lines once, through triad's handler alone
    assert "litlogger" not in text
    assert "┃" not in text and "Trainable params" not in text  # no summary table, one line for the model
    assert re.search(r"INFO triad\.train: line model: \w+, [\d.]+ ?[KM]? parameters \([\d.]+ ?[KM]? trainable\)", text)


def test_the_progress_bar_shows_only_on_a_terminal_when_auto(monkeypatch):
    from triad.train import show_progress_bar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert show_progress_bar("auto") is False and show_progress_bar(True) is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert show_progress_bar("auto") is True and show_progress_bar(False) is False


@pytest.mark.parametrize("head", head_names())
def test_each_heads_served_model_has_the_type_hints_mlflow_asks_for(head):
    """MLflow warns "Add type hints to the `predict` method" for a predict without them; a hint it
    would infer a signature from (``list[str]``) would replace the signature the example gives, and
    a union it cannot read warns too. ``pd.DataFrame`` is what the pyfunc hands ``predict`` once it
    has enforced the column signature: no warning, no change to the signature or the input."""
    from mlflow.types.type_hints import _signature_cannot_be_inferred_from_type_hint

    module = importlib.import_module(f"triad.heads.{head}.pyfunc")
    models = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, mlflow.pyfunc.PythonModel) and cls.__module__ == module.__name__
    ]
    assert models, f"no PythonModel in {module.__name__}"
    for cls in models:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hints = cls().predict_type_hints
        assert hints.input is not None, f"{cls.__name__}.predict has no type hint on model_input"
        assert _signature_cannot_be_inferred_from_type_hint(hints.input), f"{cls.__name__}: {hints.input}"


def test_a_pyfunc_is_logged_as_code_unless_it_holds_state_of_its_own(tmp_path):
    from triad.heads.spread.pyfunc import SpreadPyfunc
    from triad.model_code import as_model_code

    path = Path(as_model_code(SpreadPyfunc(), tmp_path))
    assert path.parent == tmp_path
    assert "from triad.heads.spread.pyfunc import SpreadPyfunc\n\nset_model(SpreadPyfunc())" in path.read_text()
    stateful = SpreadPyfunc()
    stateful.threshold = 0.5  # a fresh instance would lose it: this one is pickled, as before
    assert as_model_code(stateful, tmp_path) is stateful
