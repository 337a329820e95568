"""`triad predict`: the model's own settings by default, and bad input refused in one line, not a traceback.

The registry is replaced by small stand-in models so that only the command's own behaviour is tested.
"""

from __future__ import annotations

import importlib
import io
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.types import ColSpec, Schema
from PIL import Image

from triad.cli import main


class Recorder:
    """A model that records its input and answers with ``answer(input)``."""

    def __init__(self, answer, input_column: str | None = None, config: dict | None = None):
        self.answer, self.inputs = answer, []
        schema = (
            Schema([ColSpec("binary" if input_column == "image" else "string", input_column)]) if input_column else None
        )
        self.metadata = SimpleNamespace(get_input_schema=lambda: schema)
        self.config = config

    def predict(self, model_input):
        self.inputs.append(model_input)
        return self.answer(model_input)

    def unwrap_python_model(self):
        if self.config is None:
            raise mlflow.exceptions.MlflowException("not a python model")
        return SimpleNamespace(config=self.config)


@pytest.fixture
def serve(monkeypatch):
    """serve(model): `triad predict` loads this model whatever the URI."""
    pyfunc = importlib.import_module("mlflow.pyfunc")  # the module itself: mlflow.pyfunc may be a lazy stand-in

    def install(model):
        monkeypatch.setattr(pyfunc, "load_model", lambda uri: model)
        return model

    return install


def images(request: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"image": [np.zeros((4, 4), np.uint8)] * int(request["n"][0])})


def classified(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"label": ["a"] * len(frame), "label_id": [0] * len(frame), "p_a": [1.0] * len(frame)})


def png_file(path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return str(path)


def test_diffusion_leaves_steps_and_guidance_to_the_model_unless_given(serve, tmp_path):
    model = serve(Recorder(images))
    assert main(["predict", "diffusion", "--label", "1", "--n", "2", "--out", str(tmp_path / "a.png")]) == 0
    assert model.inputs[0].to_dict("records") == [{"label": 1, "n": 2, "seed": 0}]
    assert (tmp_path / "a.png").is_file()
    assert (
        main(
            [
                "predict",
                "diffusion",
                "--label",
                "1",
                "--steps",
                "5",
                "--guidance",
                "1.5",
                "--out",
                str(tmp_path / "b.png"),
            ]
        )
        == 0
    )
    assert model.inputs[1].to_dict("records") == [{"label": 1, "n": 16, "seed": 0, "steps": 5, "guidance": 1.5}]


def test_diffusion_help_says_the_defaults_are_the_models_own(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "diffusion", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: the model's own sample_steps" in text and "(default: the model's own guidance" in text


def test_texts_for_an_image_model_are_refused_by_its_signature(serve, capsys):
    model = serve(Recorder(classified, input_column="image"))
    assert main(["predict", "transfer", "--text", "a chest x-ray"]) == 2
    assert "this model classifies images: pass PNG or JPEG paths, without --text" in capsys.readouterr().err
    assert not model.inputs


def test_image_paths_for_a_text_model_are_refused_by_its_logged_config(serve, tmp_path, capsys):
    model = serve(Recorder(classified, config={"modality": "text"}))  # no signature: the config says
    assert main(["predict", "transfer", png_file(tmp_path / "x.png")]) == 2
    assert "this model classifies texts: pass --text" in capsys.readouterr().err
    assert not model.inputs


def test_a_file_that_is_not_an_image_is_named(serve, tmp_path, capsys):
    serve(Recorder(classified, input_column="image"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    assert main(["predict", "transfer", png_file(tmp_path / "x.png"), str(notes)]) == 3
    assert f"triad: error: not a PNG or JPEG image: {notes}" in capsys.readouterr().err


def test_a_missing_file_is_named(serve, tmp_path, capsys):
    serve(Recorder(classified, input_column="image"))
    assert main(["predict", "transfer", str(tmp_path / "nowhere.png")]) == 3
    assert "no such image file(s)" in capsys.readouterr().err


def test_images_for_an_image_model_are_classified(serve, tmp_path, capsys):
    model = serve(Recorder(classified, input_column="image"))
    path = png_file(tmp_path / "x.png")
    assert main(["predict", "transfer", path]) == 0
    assert model.inputs[0]["image"][0] == (tmp_path / "x.png").read_bytes()
    assert path in capsys.readouterr().out


def refuse(frame):
    raise ValueError("Failed to read the input:\n  column 'text' holds bytes\n  and more")


def test_a_value_error_from_the_model_is_one_line_with_exit_2(serve, capsys):
    serve(Recorder(refuse, input_column="text"))
    assert main(["predict", "transfer", "--text", "hello"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("triad: error: the model refused the input: Failed to read the input:")


def test_verbose_keeps_the_models_traceback(serve):
    serve(Recorder(refuse, input_column="text"))
    with pytest.raises(ValueError, match="Failed to read the input"):
        main(["-v", "predict", "transfer", "--text", "hello"])


def test_other_exceptions_from_the_model_are_not_hidden(serve):
    def broken(frame):
        raise RuntimeError("shape mismatch in layer 3")

    serve(Recorder(broken, input_column="text"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["predict", "transfer", "--text", "hello"])
