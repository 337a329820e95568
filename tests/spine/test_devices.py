"""Where work outside the Lightning Trainer runs: the translator's language model and the heads'
evaluation follow the trainer onto a GPU when there is one."""

import importlib

import pytest
import torch

from triad.config import compose
from triad.evaluate import evaluation_device
from triad.heads import get_head


@pytest.mark.parametrize(
    "accelerator, cuda, device",
    [
        ("cpu", True, "cpu"),
        ("gpu", True, "cuda"),
        ("auto", True, "cuda"),
        ("gpu", False, "cpu"),
        ("auto", False, "cpu"),
    ],
)
def test_the_language_model_follows_the_trainer_onto_a_gpu(monkeypatch, accelerator, cuda, device):
    """On a GPU machine the language model must not train on the CPU: on the H200 machine one epoch
    of Multi30k took 4.5 minutes there (beside another check), more than the translator's training."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert compose([f"trainer.accelerator={accelerator}"]).trainer.torch_device() == device


@pytest.mark.parametrize(
    "head, accelerator, device",
    [
        ("diffusion", "gpu", "cuda"),
        ("diffusion", "cpu", "cpu"),
        ("spread", "gpu", "cpu"),
        ("translator", "gpu", "cpu"),
    ],
)
def test_only_heads_made_for_it_evaluate_on_the_gpu(monkeypatch, head, accelerator, device):
    """The diffusion evaluation (thousands of samples at up to 1000 steps) runs on the trainer's GPU;
    heads whose evaluation code is not device-clean stay on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = compose([f"trainer.accelerator={accelerator}"])
    assert evaluation_device(cfg, get_head(head, cfg)) == device


@pytest.mark.parametrize(
    "head, step, target",
    [
        ("diffusion", "judge", "triad.heads.diffusion.head.train_judge"),
        ("transfer", "evidence", "triad.heads.transfer.head.run_evidence"),
        ("translator", "lm", "triad.heads.translator.head.train_language_model"),
    ],
)
@pytest.mark.parametrize("accelerator, device", [("gpu", "cuda"), ("cpu", "cpu")])
def test_each_heads_extra_step_trains_on_the_trainers_device(
    monkeypatch, tmp_path, head, step, target, accelerator, device
):
    """The judge (10 epochs over 57,000 Fashion-MNIST images: about 10 minutes an epoch on 2 CPU
    cores) and the transfer evidence (dozens of trainings) would overrun a GPU check on the CPU.
    The step's training function, as the head calls it, is replaced by one that records where it was asked to run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked = {}

    def record(*args, **kwargs):
        asked["device"] = kwargs.get("device")
        return {}

    module_name, _, function = target.rpartition(".")
    monkeypatch.setattr(importlib.import_module(module_name), function, record)
    steps = get_head(head, compose([f"trainer.accelerator={accelerator}"])).steps()
    steps[step](tmp_path)
    assert asked == {"device": device}
