"""The diffusion head: a class-conditional DDPM/DDIM image generator, judged by a classifier.

Stages: prepare (data.py; the user's own folder: own_data.py) -> judge (judge.py, an extra step) -> train
(module.py) -> evaluate (evaluate.py) -> pyfunc (pyfunc.py). The gate metric is the FID of EMA samples in
the judge's feature space (lower is better); a class-conditional version must also reach
``min_conditional_accuracy``. An unconditional version (trained on a flat folder of the user's images) has
no classes to be accurate about: its judge learned the images' rotations instead, its FID is measured in
that judge's features, and it is gated on FID alone (its ``upright_rate`` is reported, not barred).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from triad.errors import ConfigError, NotComparable
from triad.heads.base import Baseline, CardSections, Evaluation, Head, PyfuncBundle
from triad.heads.diffusion.data import DiffusionDataModule, prepare
from triad.heads.diffusion.evaluate import evaluate, rescore_fid
from triad.heads.diffusion.judge import train_judge
from triad.heads.diffusion.module import DiffusionModule
from triad.heads.diffusion.pyfunc import DiffusionPyfunc, input_signature, write_artifacts


class DiffusionHead(Head):
    name = "diffusion"
    gate_metric = "fid"
    gate_mode = "min"
    evaluate_on_accelerator = True  # sampling thousands of images at up to 1000 steps: hours on a CPU

    def steps(self) -> dict[str, Callable[[Path], dict[str, Any]]]:
        return {"judge": self.train_judge}

    def train_judge(self, out_dir: Path) -> dict[str, Any]:
        return train_judge(
            self.model_cfg.judge, self.dir("data"), out_dir, seed=self.cfg.seed, device=self.cfg.trainer.torch_device()
        )

    def prepare(self, out_dir: Path) -> dict[str, Any]:
        return prepare(self.data_cfg, out_dir, self.cfg.paths.mirror_dir)

    def datamodule(self, data_dir: Path) -> DiffusionDataModule:
        return DiffusionDataModule(data_dir, self.model_cfg.batch_size, self.cfg.trainer.num_workers, self.cfg.seed)

    def module(self, datamodule: DiffusionDataModule) -> DiffusionModule:
        try:
            return DiffusionModule(
                self.model_cfg,
                datamodule.channels,
                datamodule.image_size,
                datamodule.n_classes,
                hflip=self.data_cfg.hflip,
            )
        except ValueError as exc:  # the UNet's shape checks name the offending model.diffusion.unet key
            raise ConfigError(f"model.diffusion.unet does not fit {datamodule.image_size}px images: {exc}") from None

    def evaluate(self, module: DiffusionModule, datamodule: DiffusionDataModule, report_dir: Path) -> Evaluation:
        return evaluate(module, datamodule, self.dir("artifacts") / "judge", report_dir, seed=self.cfg.seed)

    def pyfunc(self, module: DiffusionModule, datamodule: DiffusionDataModule, work_dir: Path) -> PyfuncBundle:
        artifacts = write_artifacts(module, datamodule.class_names, work_dir)
        if datamodule.n_classes:
            label = min(3, datamodule.n_classes - 1)
            example = [
                {"label": label, "n": 2, "steps": 10, "guidance": self.model_cfg.guidance, "seed": 0, "png": False}
            ]
        else:  # unconditional: no label, and no guidance (there is no class to guide towards)
            example = [{"n": 2, "steps": 10, "seed": 0, "png": False}]
        return PyfuncBundle(
            python_model=DiffusionPyfunc(),
            artifacts=artifacts,
            input_example=pd.DataFrame(example),
            signature=input_signature(),
        )

    def rescore(self, served: DiffusionPyfunc, datamodule: DiffusionDataModule) -> float:
        """FID of a registered diffusion model on this test split, in this data's judge's feature space.

        Sampled as the new version's evaluation samples (``eval_samples``, balanced labels, the same
        seeds), at the registered model's own DDIM steps and guidance.
        """
        if list(served.class_names) != list(datamodule.class_names):
            raise NotComparable(f"its classes {served.class_names} are not this data's {datamodule.class_names}")
        channels, size, _ = served.image_shape
        champion = DiffusionModule(served.cfg, channels, size, len(served.class_names))
        champion.ema.load_state_dict(served.net.state_dict())
        return rescore_fid(
            champion,
            datamodule,
            self.dir("artifacts") / "judge",
            self.model_cfg.eval_samples,
            self.model_cfg.eval_batch_size,
            self.cfg.seed,
        )

    def card(self, metrics: dict[str, float], data_summary: dict[str, Any]) -> CardSections:
        """What it draws (its classes, or unconditional), at what size; FID against real images' own."""
        classes, size = data_summary.get("class_names") or [], self.data_cfg.image_size
        colour = {1: "grey", 3: "RGB"}.get(data_summary.get("channels"), "")
        what = (
            f"class-conditional: a sample of one of its classes {classes}" if classes else "unconditional (no classes)"
        )
        return CardSections(
            intended_use=[
                f"drawing {size}x{size} {colour} images like its {self.data_cfg.source} training images; {what}",
                f"sampled with DDIM, {self.model_cfg.sample_steps} steps at guidance {self.model_cfg.guidance} by "
                "default (the settings its metrics were measured at; quality_vs_steps shows the others)",
            ],
            limits=[
                "its quality is measured in its judge's features (FID, precision, recall), not by people",
                "it may reproduce training images closely: not for images that must not be reproduced (people, "
                "private or licensed pictures)",
                "not a source of real data: its samples are not evidence of anything about the world",
            ],
            baselines=[
                Baseline("fid", "fid_real", "real validation vs test images (an ideal model's floor)", None),
                Baseline("conditional_accuracy", "judge_chance", "guessing a class"),
                Baseline("conditional_accuracy", "judge_test_accuracy", "the judge on real test images", None),
                Baseline("upright_rate", "real_upright_rate", "the real test images", None),
                Baseline("judge_accuracy", "judge_chance", "chance (the judge itself)"),
            ],
        )

    def gate_passes(self, metrics: dict[str, float]) -> tuple[bool, str]:
        """A finite FID, and for a class-conditional model conditional accuracy >= ``min_conditional_accuracy``.

        An unconditional model's evaluation reports ``upright_rate`` in place of conditional accuracy (it has no
        class to check a sample against): it is gated on FID alone.
        """
        finite, reason = super().gate_passes(metrics)
        if not finite:
            return finite, reason
        accuracy, chance = metrics["judge_accuracy"], metrics["judge_chance"]
        skill, bar = (accuracy - chance) / (1 - chance), self.model_cfg.judge.min_skill
        if skill < bar:
            return False, (
                f"the judge did not learn these images (test accuracy {accuracy:.3f}, chance {chance:.3f}: "
                f"skill {skill:.2f} < {bar:.2f}), so FID in its features says nothing; train it longer "
                "(model.diffusion.judge.epochs)"
            )
        if "conditional_accuracy" not in metrics and "upright_rate" in metrics:
            upright = metrics["upright_rate"]
            return (
                True,
                f"finite FID (unconditional: no classes, so no conditional-accuracy bar; upright rate {upright:.3f})",
            )
        accuracy, bar = metrics.get("conditional_accuracy", 0.0), self.model_cfg.min_conditional_accuracy
        if accuracy < bar:
            return False, f"conditional accuracy {accuracy:.3f} is below the bar {bar:.3f}"
        return True, f"finite FID and conditional accuracy {accuracy:.3f} >= {bar:.3f}"


HEAD = DiffusionHead  # what the head registry reads (triad.heads)
