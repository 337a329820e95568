"""The diffusion config's validator: repeated eval steps, guidance without a trained null class, the UNet's size."""

import pytest
from pydantic import ValidationError

from tests.profile import section
from triad.heads.diffusion.model import UNet


def test_repeated_eval_steps_are_rejected_naming_them():
    with pytest.raises(ValidationError, match=r"eval_steps=\[5, 5, 20\] lists \[5\] more than once"):
        section("model", "diffusion", eval_steps=[5, 5, 20], sample_steps=20)


def test_guidance_without_label_dropout_is_rejected_saying_what_to_set():
    with pytest.raises(ValidationError, match="set label_drop_prob > 0.*or set guidance: 1"):
        section("model", "diffusion", label_drop_prob=0.0, guidance=3.0)
    section("model", "diffusion", label_drop_prob=0.0, guidance=1.0)  # plain conditional sampling needs no null class


def test_the_default_profile_builds_the_documented_unet_size():
    """config.py's docstring says 0.70M parameters (704,484 for 10 classes at 28x28)."""
    net = UNet(section("model", "diffusion").unet, image_channels=1, image_size=28, n_classes=10)
    assert sum(p.numel() for p in net.parameters()) == 704_484
