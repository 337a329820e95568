"""The contract every head fulfils, so that one spine can prepare, train, evaluate and register it.

A head is a family of models (translator, diffusion, transfer, ...). It owns its data step, its
LightningDataModule and LightningModule, its evaluation and its MLflow pyfunc wrapper. The spine
(``triad.prepare``, ``triad.train``, ``triad.evaluate``) owns everything shared: atomic outputs,
seeding, the Lightning Trainer, checkpoints and resume, MLflow runs, registration and the gate.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:  # keep `triad --help` fast: heavy imports only where used
    import lightning as L
    import mlflow.pyfunc

    from triad.config import TriadConfig


def request_rows(model_input: Any) -> list[dict]:
    """A pyfunc's request as a list of row dicts: a DataFrame's records, one dict, or an iterable of dicts."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        return model_input.to_dict("records")
    if isinstance(model_input, dict):
        return [model_input]
    return list(model_input)


@dataclass
class Evaluation:
    """What a head's evaluation produced.

    metrics: flat name -> float; must contain the head's ``gate_metric``.
    images:  paths of PNG files written under the report dir (logged to MLflow as images).
    tables:  name -> pandas DataFrame (logged to MLflow as tables, written as CSV for DVC plots).
    """

    metrics: dict[str, float]
    images: list[Path] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)


@dataclass
class PyfuncBundle:
    """Everything ``mlflow.pyfunc.log_model`` needs for this head's servable model.

    python_model:  a ``mlflow.pyfunc.PythonModel`` whose ``load_context`` rebuilds the network from
                   ``artifacts`` (no pickled torch module) and whose ``predict`` takes the head's
                   natural input.
    artifacts:     name -> local file path (checkpoint, tokenizer, config json, ...).
    input_example: a small natural input (list, dict or DataFrame) used for the signature.
    signature:     an explicit ``mlflow.models.ModelSignature`` where inferring one from the example
                   would be wrong (e.g. optional columns); None infers it.
    """

    python_model: mlflow.pyfunc.PythonModel
    artifacts: dict[str, str]
    input_example: Any
    signature: Any = None


@dataclass
class Baseline:
    """A reference a metric is read against, for the model card (``Head.card``).

    metric:    the evaluation metric (a key of ``Evaluation.metrics``).
    reference: another metric of the same evaluation (its name), or a fixed value (e.g. a config bar).
    meaning:   what the reference is, in a few words ("copying the source unchanged").
    mode:      "max" or "min": which way beats the reference; None: a reference point to read the
               metric by, not one to beat (e.g. the score of real data, the floor an ideal model reaches).
    """

    metric: str
    reference: str | float
    meaning: str
    mode: Literal["max", "min"] | None = "max"


@dataclass
class CardSections:
    """The head's own parts of a registered version's model card (``triad.card`` assembles the rest).

    intended_use: what the model is for, one line each.
    limits:       what it must not be used for, and the range it was validated on, one line each.
    baselines:    the references its metrics are read against.
    """

    intended_use: list[str]
    limits: list[str]
    baselines: list[Baseline] = field(default_factory=list)


class Head(abc.ABC):
    """One model family plugged into the spine.

    Subclasses set ``name``, ``gate_metric`` and ``gate_mode`` and implement the five methods.
    ``self.cfg`` is the whole validated config; ``self.data_cfg`` and ``self.model_cfg`` are this
    head's sections (``cfg.data.<name>`` and ``cfg.model.<name>``).
    """

    name: ClassVar[str]
    gate_metric: ClassVar[str]
    gate_mode: ClassVar[Literal["max", "min"]] = "max"
    # evaluate on the trainer's GPU when there is one (``TrainerConfig.torch_device``): for heads whose
    # ``evaluate`` keeps its tensors on the module's device; the module goes back to the CPU before logging
    evaluate_on_accelerator: ClassVar[bool] = False

    def __init__(self, cfg: TriadConfig):
        from triad.config import project_root

        self.cfg = cfg
        self.data_cfg = getattr(cfg.data, self.name)
        self.model_cfg = getattr(cfg.model, self.name)
        self.root = project_root()

    @property
    def registered_model_name(self) -> str:
        """``data.<head>.name`` where the data names its own model (a user's task), else ``triad-<head>``."""
        from triad.heads import registered_model_name

        return registered_model_name(self.cfg, self.name)

    def dir(self, kind: Literal["data", "artifacts", "reports", "state"]) -> Path:
        """``<project root>/<paths.{kind}_dir>/<head name>`` (absolute config paths are kept)."""
        return self.root / getattr(self.cfg.paths, f"{kind}_dir") / self.name

    def steps(self) -> dict[str, Callable[[Path], dict[str, Any]]]:
        """Extra pipeline steps this head needs besides prepare/train/evaluate, by name.

        Each takes an empty temporary output directory (renamed by the spine to
        ``artifacts/<head>/<step>/`` on success) and returns a JSON-able summary. Examples: the
        diffusion head's ``judge`` classifier, the transfer head's label-fraction ``evidence``.
        The step's DVC stage is ``<step>_<head>`` in ``dvc.yaml``.
        """
        return {}

    # --- data step -------------------------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, out_dir: Path) -> dict[str, Any]:
        """Fetch, verify checksums, validate, split and write this head's dataset into ``out_dir``.

        Deterministic for a given config. ``out_dir`` is an empty temporary directory that the spine
        renames into place only if this returns, so a failure never leaves half-written data. Raise
        ``triad.errors.DataError`` with a message that says what is wrong and how to fix it.
        Returns a JSON-able summary (split sizes, ...) that the spine writes to ``summary.json``.
        """

    # --- training --------------------------------------------------------------------------------
    @abc.abstractmethod
    def datamodule(self, data_dir: Path) -> L.LightningDataModule:
        """The LightningDataModule over a prepared ``data_dir``."""

    @abc.abstractmethod
    def module(self, datamodule: L.LightningDataModule) -> L.LightningModule:
        """A freshly initialised LightningModule sized for ``datamodule`` (vocab, classes, ...).

        It logs ``train_loss`` and ``val_loss`` (the spine monitors ``val_loss``) and configures
        its own optimiser from ``self.model_cfg``. Its ``state_dict`` is all the spine saves.
        """

    # --- evaluation and serving -------------------------------------------------------------------
    @abc.abstractmethod
    def evaluate(self, module: L.LightningModule, datamodule: L.LightningDataModule, report_dir: Path) -> Evaluation:
        """Score ``module`` on the held-out test split; write pictures and tables to ``report_dir``."""

    @abc.abstractmethod
    def pyfunc(self, module: L.LightningModule, datamodule: L.LightningDataModule, work_dir: Path) -> PyfuncBundle:
        """The servable model; artifact files are written under ``work_dir``."""

    def rescore(self, served: mlflow.pyfunc.PythonModel, datamodule: L.LightningDataModule) -> float:
        """The gate metric of a registered model (its loaded pyfunc, ``served``) on ``datamodule``'s test split.

        The gate calls it when the champion was scored on another data version than the new
        version's, so that the two are compared on the same test data. Raise
        ``triad.errors.NotComparable`` (or let a shape or key error through) when it cannot be
        scored on this data; the gate then judges the new version by the bar alone and says so.
        """
        from triad.errors import NotComparable

        raise NotComparable(f"the {self.name} head does not score registered models on new data")

    def card(self, metrics: dict[str, float], data_summary: dict[str, Any]) -> CardSections:
        """This head's sections of the model card of a version evaluated with ``metrics``, trained on the
        data that ``data_summary`` (prepare's ``summary.json``) describes: intended use, known limits
        (the range it was validated on, the input it takes) and the baselines its metrics beat.

        The default says only what holds for any head; heads say what they know from their config.
        """
        return CardSections(
            intended_use=[f"predictions of the {self.name} head on inputs like its training data"],
            limits=["validated on its held-out test split only: inputs unlike its training data are out of its range"],
        )

    def gate_passes(self, metrics: dict[str, float]) -> tuple[bool, str]:
        """An absolute bar a new version must clear before it may even compete for champion.

        The default only requires a finite gate metric; heads add their own (e.g. beat a baseline).
        """
        import math

        value = metrics.get(self.gate_metric)
        if value is None or not math.isfinite(value):
            return False, f"{self.gate_metric} is {value!r}, not a finite number"
        return True, "finite gate metric"
