"""What the served transfer model accepts as input, and how it refuses the rest.

Images are read as training reads them, 0-255 pixel values; anything that would be silently
misread (floats, out-of-range values, a 16-bit PNG clipped to white, one bare 2-D array, bytes
given to a text model) is refused with a message that says how to fix it.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from triad.errors import TriadError
from triad.heads.transfer.pyfunc import InputError, TransferPyfunc, decode_image, image_kind

IMAGE = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class MeanBrightness(torch.nn.Module):
    """A stand-in classifier: class 1 for bright images, class 0 for dark ones; texts by length."""

    def forward(self, x):
        if isinstance(x, list):
            score = torch.tensor([len(t) / 10.0 for t in x])
        else:
            score = x.float().flatten(1).mean(1) / 255.0 - 0.5
        return torch.stack([-score, score], -1) * 10


def served(modality: str, image_mode: str | None = "L") -> TransferPyfunc:
    model = TransferPyfunc()
    model.config = {"modality": modality, "image_mode": image_mode, "class_names": ["a", "b"], "threshold": None}
    model.classifier = MeanBrightness()
    return model


def test_input_errors_are_value_errors_the_cli_prints_in_one_line():
    assert issubclass(InputError, TriadError) and issubclass(InputError, ValueError)


def test_image_kind_reads_the_file_signature():
    jpeg = io.BytesIO()
    Image.fromarray(IMAGE).save(jpeg, format="JPEG")
    assert image_kind(png(IMAGE)) == "PNG" and image_kind(jpeg.getvalue()) == "JPEG"
    assert image_kind(b"not an image at all") is None


@pytest.mark.parametrize("pixels", [IMAGE / 255.0, IMAGE.astype(np.float32)], ids=["0-1", "0-255"])
def test_float_images_are_refused_not_cast_to_near_black(pixels):
    with pytest.raises(InputError, match="scale to 0-255 uint8|Scale to 0-255 uint8"):
        decode_image(pixels, "L")


def test_pixel_values_outside_0_255_are_refused_not_wrapped():
    with pytest.raises(InputError, match=r"range over \[0, 300\]"):
        decode_image(np.array([[0, 300]] * 2), "L")
    with pytest.raises(InputError, match=r"range over \[-1, 5\]"):
        decode_image(np.array([[-1, 5]] * 2), "L")


def test_integer_arrays_in_range_read_as_their_uint8_values():
    assert np.array_equal(decode_image(IMAGE.astype(np.int64), "L"), IMAGE)


def test_a_16_bit_png_is_rescaled_by_its_bit_depth_not_clipped_to_white():
    sixteen = IMAGE.astype(np.uint16) * 257  # the same picture on the 0..65535 scale
    data = png(sixteen)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert np.array_equal(decode_image(data, "L"), IMAGE)
    rgb = decode_image(data, "RGB")
    assert rgb.shape == (28, 28, 3) and np.array_equal(rgb[..., 1], IMAGE)


def test_an_8_bit_png_and_an_h_w_1_array_read_as_the_grayscale_image():
    assert np.array_equal(decode_image(png(IMAGE), "L"), IMAGE)
    assert np.array_equal(decode_image(IMAGE[..., None], "L"), IMAGE)
    assert decode_image(IMAGE[..., None], "RGB").shape == (28, 28, 3)


@pytest.mark.parametrize(
    "pixels",
    [IMAGE[None], np.zeros((28, 28, 2), np.uint8), np.zeros((0, 5), np.uint8)],
    ids=["channels-first", "two-channels", "empty"],
)
def test_arrays_that_are_not_one_image_are_refused_with_the_expected_shapes(pixels):
    with pytest.raises(InputError, match=r"\(H, W\) or \(H, W, C\)"):
        decode_image(pixels, "L")


def test_bytes_that_are_not_png_or_jpeg_are_refused():
    with pytest.raises(InputError, match="not a PNG or JPEG image"):
        decode_image(b"hello world", "L")
    with pytest.raises(InputError, match="corrupt or truncated PNG"):
        decode_image(png(IMAGE)[:60], "L")


def test_one_bare_2d_array_is_refused_rather_than_classified_row_by_row():
    model = served("image")
    with pytest.raises(InputError, match="pass a list of images"):
        model.predict(None, IMAGE)
    out = model.predict(None, [IMAGE, IMAGE[..., None], png(IMAGE)])
    assert len(out) == 3 and out.p_b.nunique() == 1  # three readings of the same picture agree


def test_a_batch_array_is_still_accepted():
    batch = np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)])
    assert served("image").predict(None, batch).label.tolist() == ["a", "b"]


def test_the_failing_image_is_named():
    with pytest.raises(InputError, match="^image 1: float pixel values"):
        served("image").predict(None, [IMAGE, IMAGE / 255.0])


def test_texts_given_to_an_image_model_are_refused():
    with pytest.raises(InputError, match="this model classifies images"):
        served("image").predict(None, ["a chest x-ray"])
    with pytest.raises(InputError, match="this model classifies images: expected a column 'image'"):
        served("image").predict(None, pd.DataFrame({"text": ["a chest x-ray"]}))


def test_bytes_given_to_a_text_model_are_refused_not_classified_as_their_repr():
    model = served("text", image_mode=None)
    with pytest.raises(InputError, match="text 0 is bytes.*this model classifies texts"):
        model.predict(None, [png(IMAGE)])
    with pytest.raises(InputError, match="text 0 is bytes"):
        model.predict(None, pd.DataFrame({"text": [b"in the beginning"]}))
    with pytest.raises(InputError, match="pass a list of texts"):
        model.predict(None, "in the beginning")
    assert model.predict(None, ["in the beginning"]).label.tolist() == ["b"]
