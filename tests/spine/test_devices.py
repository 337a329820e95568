"""Where work outside the Lightning Trainer runs: the translator's language model and the heads'
evaluation follow the trainer onto a GPU when there is one."""

import pytest
import torch

from triad.config import TrainerConfig, compose
from triad.evaluate import evaluation_device
from triad.heads import get_head


@pytest.mark.parametrize("accelerator, cuda, device", [
    ("cpu", True, "cpu"), ("gpu", True, "cuda"), ("auto", True, "cuda"), ("gpu", False, "cpu"), ("auto", False, "cpu"),
])
def test_the_language_model_follows_the_trainer_onto_a_gpu(monkeypatch, accelerator, cuda, device):
    """On a GPU machine the language model must not train on the CPU: on the H200 machine one epoch
    of Multi30k took 4.5 minutes there (beside another check), more than the translator's training."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert TrainerConfig(accelerator=accelerator).torch_device() == device


@pytest.mark.parametrize("head, accelerator, device", [
    ("diffusion", "gpu", "cuda"), ("diffusion", "cpu", "cpu"), ("spread", "gpu", "cpu"), ("translator", "gpu", "cpu"),
])
def test_only_heads_made_for_it_evaluate_on_the_gpu(monkeypatch, head, accelerator, device):
    """The diffusion evaluation (thousands of samples at up to 1000 steps) runs on the trainer's GPU;
    heads whose evaluation code is not device-clean stay on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = compose([f"trainer.accelerator={accelerator}"])
    assert evaluation_device(cfg, get_head(head, cfg)) == device
