"""The transfer head: fine-tune a pretrained backbone on a small labelled task.

Gate metric ``test_score``: ROC AUC on a binary task, accuracy otherwise (``gate_metric`` is one
name for every task, so the score it names changes meaning with the task; both are logged under
their own names too). A new version must also beat chance: AUC 0.5, or the majority-class rate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from triad.errors import ConfigError, NotComparable
from triad.heads.base import Baseline, CardSections, Evaluation, Head, PyfuncBundle
from triad.heads.transfer.data import TransferDataModule, prepare
from triad.heads.transfer.evaluate import classification_metrics, decision_threshold, evaluate, predict_proba
from triad.heads.transfer.evidence import run_evidence
from triad.heads.transfer.module import TransferModule
from triad.heads.transfer.pretrain import run_pretrain
from triad.heads.transfer.pyfunc import TransferPyfunc, input_example, save_artifacts, signature


class TransferHead(Head):
    name = "transfer"
    gate_metric = "test_score"
    gate_mode = "max"

    def steps(self) -> dict[str, Callable[[Path], dict[str, Any]]]:
        """``pretrain`` (self-supervised, on the unlabelled training images), then ``evidence`` (which reads it)."""

        def pretrain(out_dir: Path) -> dict[str, Any]:
            if self.cfg.trainer.num_threads:  # as the training stage does
                torch.set_num_threads(self.cfg.trainer.num_threads)
            return run_pretrain(
                self.dir("data"),
                self.model_cfg.pretrain,
                self.model_cfg.image_size,
                out_dir,
                seed=self.cfg.seed,
                device=self.cfg.trainer.torch_device(),
            )

        def evidence(out_dir: Path) -> dict[str, Any]:
            if self.cfg.trainer.num_threads:
                torch.set_num_threads(self.cfg.trainer.num_threads)
            return run_evidence(
                self.dir("data"),
                self.model_cfg.evidence,
                self.model_cfg.image_size,
                out_dir,
                device=self.cfg.trainer.torch_device(),
                pretrain_dir=self.dir("artifacts") / "pretrain",
            )

        return {"pretrain": pretrain, "evidence": evidence}

    def prepare(self, out_dir: Path) -> dict[str, Any]:
        return prepare(self.data_cfg, out_dir, self.cfg.paths.mirror_dir)

    def datamodule(self, data_dir: Path) -> TransferDataModule:
        return TransferDataModule(data_dir, self.model_cfg.batch_size, self.cfg.trainer.num_workers, self.cfg.seed)

    def module(self, datamodule: TransferDataModule) -> TransferModule:
        module = TransferModule(self.model_cfg, datamodule.n_classes, artifacts_dir=self.dir("artifacts"))
        if module.model.backbone.modality != datamodule.modality:
            raise ConfigError(
                f"backbone {self.model_cfg.backbone!r} reads {module.model.backbone.modality} but task "
                f"{datamodule.task!r} is {datamodule.modality}; pick a matching model/transfer option"
            )
        return module

    def evaluate(self, module: TransferModule, datamodule: TransferDataModule, report_dir: Path) -> Evaluation:
        return evaluate(module.model, datamodule, report_dir)

    def pyfunc(self, module: TransferModule, datamodule: TransferDataModule, work_dir: Path) -> PyfuncBundle:
        classifier = module.model
        threshold = decision_threshold(predict_proba(classifier, datamodule.val, desc="threshold"), datamodule)
        image_mode = None
        if datamodule.modality == "image":
            image_mode = "L" if datamodule.test.x.ndim == 3 else "RGB"
        artifacts = save_artifacts(
            classifier, self.model_cfg, datamodule.class_names, threshold, image_mode, work_dir, datamodule.input_size
        )
        return PyfuncBundle(
            TransferPyfunc(),
            artifacts,
            input_example(datamodule),
            signature(datamodule.modality, datamodule.class_names),
        )

    def rescore(self, served: TransferPyfunc, datamodule: TransferDataModule) -> float:
        """``test_score`` of a registered transfer model on this test split, with its own decision threshold."""
        if served.config["class_names"] != datamodule.class_names:
            raise NotComparable(
                f"its classes {served.config['class_names']} are not this data's {datamodule.class_names}"
            )
        probs = predict_proba(served.classifier, datamodule.test, desc="rescore champion")
        return classification_metrics(probs, datamodule.test.y, served.config["threshold"])["score"]

    def card(self, metrics: dict[str, float], data_summary: dict[str, Any]) -> CardSections:
        """The input it takes (images: PNG/JPEG converted to its size and channels; texts), its classes; its
        score against chance."""
        data, model = self.data_cfg, self.model_cfg
        classes = data_summary.get("class_names") or []
        if data_summary.get("modality", "image") == "image":
            size = data_summary.get("image_size") or model.image_size
            mode = {1: "grey", 3: "RGB"}.get(data.channels, "the mode of its training images")
            inputs = (
                f"PNG or JPEG images (8 or 16 bits) or uint8 arrays (0-255), converted to {mode} and resized to "
                f"{size}x{size} as its training images were; floats and other formats are refused"
            )
        else:
            inputs = f"texts (str), cut to {model.max_length} tokens"
        labels = f"{data.labels_per_class} labelled examples per class" if data.labels_per_class else "all labels"
        limits = [
            f"it assigns every input to one of its {len(classes)} classes, even an input that is none of them: "
            "there is no 'other' class",
            f"trained from a {model.backbone} backbone on {labels} of {data.task}: data from elsewhere (another "
            "scanner, camera or population) is outside what it was validated on",
            "its probabilities may be miscalibrated (see the reliability diagram); not for unsupervised decisions "
            "about people",
        ]
        if len(classes) == 2:
            limits.append("binary: its decision threshold was chosen on the validation split (metric `threshold`)")
        return CardSections(
            intended_use=[f"classifying {inputs} into {', '.join(map(str, classes)) or 'its classes'}"],
            limits=limits,
            baselines=[Baseline("test_score", "chance_score", "chance (AUC 0.5, or always the largest class)")],
        )

    def gate_passes(self, metrics: dict[str, float]) -> tuple[bool, str]:
        ok, why = super().gate_passes(metrics)
        if not ok:
            return ok, why
        score, chance = metrics[self.gate_metric], metrics["chance_score"]
        if score <= chance:
            return False, f"{self.gate_metric} {score:.4f} does not beat chance ({chance:.4f})"
        return True, f"{self.gate_metric} {score:.4f} beats chance ({chance:.4f})"


HEAD = TransferHead  # what the head registry reads (triad.heads)
